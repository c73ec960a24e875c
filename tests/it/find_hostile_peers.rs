//! C-FIND answers that would make a probe hold what the peer chooses: a match far larger than
//! any real identifier is refused once it passes the cap, before the rest is buffered.

use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use testkit::exporter::Exporter;
use testkit::scripted::{
    encode_dataset, encode_pdu, response_command, study_match, Conn, ScriptedPeer, STUDY_ROOT_FIND,
};
use tokio::io::AsyncWriteExt;

const CONFIG: &str = "
modules:
  find:
    prober: find
    timeout: 10s
";

/// A pending C-FIND-RSP whose identifier is a well-formed match of 10 MiB (a study with
/// 10 MiB of PatientComments), then a final success: refused once the match passes the cap.
#[tokio::test(flavor = "multi_thread")]
async fn a_ten_mebibyte_match_is_a_protocol_error() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.accept().await;
        let Some((pc, id, _)) = conn.read_find().await else {
            return;
        };
        let rsp = response_command(0x8020, id, STUDY_ROOT_FIND, 0xFF00, true);
        conn.send_message(pc, &rsp, None).await;
        let mut data = encode_dataset(&study_match("1.2.3", "20240101", "120000", Some(1)));
        // (0010,4000) LT, implicit VR.
        let comments = 10 << 20;
        data.extend_from_slice(&[0x10, 0x00, 0x00, 0x40]);
        data.extend_from_slice(&(comments as u32).to_le_bytes());
        data.resize(data.len() + comments, b'A');
        let chunks: Vec<&[u8]> = data.chunks(16_000).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let pdu = encode_pdu(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: pc,
                    value_type: PDataValueType::Data,
                    is_last: i + 1 == chunks.len(),
                    data: chunk.to_vec(),
                }],
            });
            if conn.stream.write_all(&pdu).await.is_err() {
                return;
            }
        }
        let done = response_command(0x8020, id, STUDY_ROOT_FIND, 0x0000, false);
        conn.send_message(pc, &done, None).await;
        conn.release().await;
    })
    .await;
    let answer = Exporter::new(CONFIG)
        .probe("find", &peer.target("X"), Some(2.0))
        .await;
    answer.assert_failed("find", "protocol_error");
    assert!(
        answer.metric("probe_duration_seconds") < 0.5,
        "{}",
        answer.body
    );
}
