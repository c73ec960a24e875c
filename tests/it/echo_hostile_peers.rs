//! The echo probe against scripted peers that misbehave in every way the failure vocabulary
//! names. Each test checks the stage and reason an operator would alert on, and that the
//! answer arrived before Prometheus' scrape timeout.

use std::time::Duration;

use dicom_ul::pdu::{
    AbortRQSource, AssociationAC, AssociationRJResult as Result_,
    AssociationRJServiceProviderASCEReason as Asce,
    AssociationRJServiceProviderPresentationReason as Presentation,
    AssociationRJServiceUserReason as User, AssociationRJSource as Source, PDataValue,
    PDataValueType, Pdu, PresentationContextResult, PresentationContextResultReason,
    UserVariableItem,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use testkit::exporter::{Answer, Exporter};
use testkit::scripted::{encode_pdu, response_command, Conn, ScriptedPeer};
use tokio::io::AsyncWriteExt;

const CONFIG: &str = "
modules:
  echo:
    prober: echo
    timeout: 10s
";

/// Prometheus' scrape timeout in these tests; the probe deadline is 0.5 s less.
const SCRAPE_TIMEOUT: f64 = 1.5;

async fn probe(peer: &ScriptedPeer) -> Answer {
    let answer = Exporter::new(CONFIG)
        .probe("echo", &peer.target("SCRIPTED"), Some(SCRAPE_TIMEOUT))
        .await;
    let answer = answer.within(SCRAPE_TIMEOUT);
    assert_eq!(answer.metric("probe_timeout_seconds"), 1.0);
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn scripted_success_reports_every_echo_metric() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.accept().await;
        conn.echo_response(0x0000).await;
        conn.release().await;
    })
    .await;
    let answer = probe(&peer).await;
    assert_eq!(answer.metric("probe_success"), 1.0, "{}", answer.body);
    assert_eq!(answer.metric("probe_dicom_status"), 0.0);
    assert_eq!(
        answer.metric(
            "probe_dicom_peer_info{implementation_class_uid=\"1.2.3.4.5.6.7\",implementation_version_name=\"SCRIPTED_1\"}"
        ),
        1.0
    );
    assert!(answer.value("probe_failure_info").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_after_accept_times_out_in_associate() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move { conn.hold().await }).await;
    let answer = probe(&peer).await;
    answer.assert_failed("associate", "timeout");
    assert!(
        answer.metric("probe_duration_seconds") >= 0.99,
        "{}",
        answer.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_bytes_are_a_protocol_error() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.read_request().await;
        conn.write_raw(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        conn.hold().await;
    })
    .await;
    probe(&peer)
        .await
        .assert_failed("associate", "protocol_error");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_pdu_length_is_refused_without_waiting_for_it() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.read_request().await;
        // An A-ASSOCIATE-AC announcing 4 GiB.
        conn.write_raw(&[0x02, 0x00, 0xFF, 0xFF, 0xFF, 0xF0]).await;
        conn.hold().await;
    })
    .await;
    let answer = probe(&peer).await;
    answer.assert_failed("associate", "protocol_error");
    assert!(
        answer.metric("probe_duration_seconds") < 0.5,
        "{}",
        answer.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rejections_map_to_their_reasons() {
    let cases = [
        (
            Result_::Permanent,
            Source::ServiceUser(User::CallingAETitleNotRecognized),
            "rejected_calling_aet",
        ),
        (
            Result_::Permanent,
            Source::ServiceUser(User::CalledAETitleNotRecognized),
            "rejected_called_aet",
        ),
        (
            Result_::Transient,
            Source::ServiceProviderPresentation(Presentation::TemporaryCongestion),
            "rejected_busy",
        ),
        (
            Result_::Transient,
            Source::ServiceProviderPresentation(Presentation::LocalLimitExceeded),
            "rejected_busy",
        ),
        (
            Result_::Permanent,
            Source::ServiceUser(User::NoReasonGiven),
            "rejected_other",
        ),
        (
            Result_::Permanent,
            Source::ServiceUser(User::ApplicationContextNameNotSupported),
            "rejected_other",
        ),
        (
            Result_::Permanent,
            Source::ServiceProviderASCE(Asce::ProtocolVersionNotSupported),
            "rejected_other",
        ),
    ];
    for (result, source, reason) in cases {
        let peer = ScriptedPeer::start(move |mut conn: Conn| {
            let (result, source) = (result.clone(), source.clone());
            async move { conn.reject(result, source).await }
        })
        .await;
        let answer = probe(&peer).await;
        answer.assert_failed("associate", reason);
        assert!(
            answer.metric("probe_duration_seconds") < 0.5,
            "{reason}: {}",
            answer.body
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn abort_after_the_request() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.read_request().await;
        conn.write_pdu(&Pdu::AbortRQ {
            source: AbortRQSource::ServiceUser,
        })
        .await;
        conn.hold().await;
    })
    .await;
    probe(&peer).await.assert_failed("associate", "aborted");
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_closed_after_the_request() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.read_request().await;
    })
    .await;
    probe(&peer).await.assert_failed("associate", "aborted");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_accepted_presentation_context() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        let Some(rq) = conn.read_request().await else {
            return;
        };
        let Pdu::AssociationAC(ac) = Conn::accept_pdu(&rq) else {
            return;
        };
        let contexts = ac
            .presentation_contexts
            .iter()
            .map(|pc| PresentationContextResult {
                id: pc.id,
                reason: PresentationContextResultReason::AbstractSyntaxNotSupported,
                transfer_syntax: pc.transfer_syntax.clone(),
            })
            .collect();
        conn.write_pdu(&Pdu::AssociationAC(AssociationAC {
            presentation_contexts: contexts,
            ..ac
        }))
        .await;
        conn.hold().await;
    })
    .await;
    probe(&peer)
        .await
        .assert_failed("associate", "no_presentation_context");
}

#[tokio::test(flavor = "multi_thread")]
async fn abort_mid_echo() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.accept().await;
        conn.read_message().await;
        conn.write_pdu(&Pdu::AbortRQ {
            source: AbortRQSource::ServiceUser,
        })
        .await;
        conn.hold().await;
    })
    .await;
    let answer = probe(&peer).await;
    answer.assert_failed("echo", "aborted");
    assert_eq!(answer.metric("probe_dicom_status"), -1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_after_echo_request() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.accept().await;
        conn.hold().await;
    })
    .await;
    probe(&peer).await.assert_failed("echo", "timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_failure_status() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.accept().await;
        conn.echo_response(0x0211).await; // Unrecognized operation
        conn.release().await;
    })
    .await;
    let answer = probe(&peer).await;
    answer.assert_failed("echo", "status_failure");
    assert_eq!(answer.metric("probe_dicom_status"), f64::from(0x0211));
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_on_release() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.accept().await;
        conn.echo_response(0x0000).await;
        conn.hold().await;
    })
    .await;
    let answer = probe(&peer).await;
    answer.assert_failed("release", "timeout");
    assert_eq!(answer.metric("probe_dicom_status"), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_drip_of_the_accept_is_cut_off_at_the_deadline() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        let Some(rq) = conn.read_request().await else {
            return;
        };
        let accept = encode_pdu(&Conn::accept_pdu(&rq));
        conn.drip(&accept, Duration::from_millis(100)).await;
    })
    .await;
    probe(&peer).await.assert_failed("associate", "timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_connection() {
    // Bind, then close: nothing listens on the port afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let answer = Exporter::new(CONFIG)
        .probe("echo", &format!("X@127.0.0.1:{port}"), Some(SCRAPE_TIMEOUT))
        .await;
    answer.assert_failed("connect", "refused");
}

/// A failed probe has the same series as a successful one, plus probe_failure_info: dashboards
/// and alerts must not see series vanish depending on how far a probe got.
#[tokio::test(flavor = "multi_thread")]
async fn metric_set_is_fixed() {
    let good = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.accept().await;
        conn.echo_response(0).await;
        conn.release().await;
    })
    .await;
    let silent = ScriptedPeer::start(|mut conn: Conn| async move { conn.hold().await }).await;
    let mut good = probe(&good).await.families();
    let mut bad = probe(&silent).await.families();
    bad.retain(|f| f != "probe_failure_info");
    good.sort();
    bad.sort();
    assert_eq!(good, bad);
    assert_eq!(
        good,
        [
            "probe_dicom_association_duration_seconds",
            "probe_dicom_connect_duration_seconds",
            "probe_dicom_echo_duration_seconds",
            "probe_dicom_peer_info",
            "probe_dicom_status",
            "probe_dns_lookup_time_seconds",
            "probe_duration_seconds",
            "probe_success",
            "probe_timeout_seconds",
        ]
    );
}

/// A command set whose element declares 4 GiB: refused before anything is allocated.
#[tokio::test(flavor = "multi_thread")]
async fn element_length_larger_than_the_message() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.accept().await;
        let Some((pc, _, _)) = conn.read_message().await else {
            return;
        };
        // (0000,0002) UI, implicit VR, length 0xFFFFFFF0, then two bytes.
        let command = vec![0x00, 0x00, 0x02, 0x00, 0xF0, 0xFF, 0xFF, 0xFF, b'1', 0];
        conn.write_pdu(&Pdu::PData {
            data: vec![dicom_ul::pdu::PDataValue {
                presentation_context_id: pc,
                value_type: dicom_ul::pdu::PDataValueType::Command,
                is_last: true,
                data: command,
            }],
        })
        .await;
        conn.hold().await;
    })
    .await;
    let answer = probe(&peer).await;
    answer.assert_failed("echo", "protocol_error");
    assert!(
        answer.metric("probe_duration_seconds") < 0.5,
        "{}",
        answer.body
    );
}

/// Accepts with `user_variables` in place of the scripted peer's own, then answers a C-ECHO
/// and a release.
async fn identifying_as(user_variables: Vec<UserVariableItem>) -> ScriptedPeer {
    ScriptedPeer::start(move |mut conn: Conn| {
        let user_variables = user_variables.clone();
        async move {
            let Some(rq) = conn.read_request().await else {
                return;
            };
            let Pdu::AssociationAC(ac) = Conn::accept_pdu(&rq) else {
                return;
            };
            conn.write_pdu(&Pdu::AssociationAC(AssociationAC {
                user_variables,
                ..ac
            }))
            .await;
            conn.echo_response(0x0000).await;
            conn.release().await;
        }
    })
    .await
}

/// The peer's implementation class UID and version name become label values: what the
/// standard does not allow there fails the association, and the log shows it escaped and cut.
#[tokio::test(flavor = "multi_thread")]
async fn peer_identity_outside_the_standard_is_a_protocol_error() {
    let uid = |s: &str| UserVariableItem::ImplementationClassUID(s.to_string());
    let name = |s: &str| UserVariableItem::ImplementationVersionName(s.to_string());
    let huge = "1.".repeat(30_000) + "1";
    let cases = [
        (uid("1.2.3\u{1b}[2J"), "implementation class UID"),
        (uid(&huge), "implementation class UID"),
        (uid("1.2.3.ABC"), "implementation class UID"),
        (name("BELL\u{7}"), "implementation version name"),
        (name("A_NAME_OF_17_CHAR"), "implementation version name"),
        (name("line\nbreak"), "implementation version name"),
    ];
    for (item, field) in cases {
        let mut items = vec![UserVariableItem::MaxLength(16384)];
        if !matches!(item, UserVariableItem::ImplementationClassUID(_)) {
            items.push(uid("1.2.3.4"));
        }
        items.push(item.clone());
        let peer = identifying_as(items).await;
        let answer = probe(&peer).await;
        answer.assert_failed("associate", "protocol_error");
        assert_eq!(
            answer.metric(
                "probe_dicom_peer_info{implementation_class_uid=\"\",implementation_version_name=\"\"}"
            ),
            1.0,
            "{item:?}: {}",
            answer.body
        );

        let debug = Exporter::new(CONFIG)
            .get(
                &format!(
                    "/probe?module=echo&target={}&debug=true",
                    peer.target("SCRIPTED").replace('@', "%40")
                ),
                &[("X-Prometheus-Scrape-Timeout-Seconds", "1.5")],
            )
            .await
            .body;
        assert!(debug.contains(field), "{item:?}: {debug}");
        assert!(
            !debug.chars().any(|c| c.is_control() && c != '\n'),
            "{item:?}: control characters in the log:\n{debug}"
        );
        assert!(
            !debug.contains(&"1.".repeat(100)),
            "the whole UID is in the log"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_version_name_leaves_its_label_empty() {
    let peer = identifying_as(vec![
        UserVariableItem::MaxLength(16384),
        UserVariableItem::ImplementationClassUID("1.2.826.0.1.3680043.2.1143".to_string()),
    ])
    .await;
    let answer = probe(&peer).await;
    assert_eq!(answer.metric("probe_success"), 1.0, "{}", answer.body);
    assert_eq!(
        answer.metric(
            "probe_dicom_peer_info{implementation_class_uid=\"1.2.826.0.1.3680043.2.1143\",implementation_version_name=\"\"}"
        ),
        1.0
    );
}

/// A C-ECHO-RSP answers on the presentation context of its request, or it answers nothing.
#[tokio::test(flavor = "multi_thread")]
async fn echo_response_on_another_presentation_context() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.accept().await;
        let Some((pc, rq, _)) = conn.read_message().await else {
            return;
        };
        let Some(id) = rq
            .get(dicom_dictionary_std::tags::MESSAGE_ID)
            .and_then(|e| e.to_int::<u16>().ok())
        else {
            return;
        };
        let rsp = response_command(0x8030, id, "1.2.840.10008.1.1", 0x0000, false);
        conn.send_message(pc + 2, &rsp, None).await;
        conn.release().await;
    })
    .await;
    let answer = probe(&peer).await;
    answer.assert_failed("echo", "protocol_error");
    assert_eq!(answer.metric("probe_dicom_status"), -1.0);
}

/// A C-ECHO-RSP carries no data set: one that announces one is refused when its command
/// arrives, whether the data set is a few bytes or 40 MiB. Of the 40 MiB, the peer gets no
/// further than what the sockets' buffers hold before the connection is closed.
#[tokio::test(flavor = "multi_thread")]
async fn data_set_on_an_echo_response_is_refused_before_it_is_read() {
    for size in [10, 40 << 20] {
        let written = Arc::new(AtomicUsize::new(0));
        let counter = written.clone();
        let peer = ScriptedPeer::start(move |mut conn: Conn| {
            let written = counter.clone();
            async move {
                conn.accept().await;
                let Some((pc, rq, _)) = conn.read_message().await else {
                    return;
                };
                let Some(id) = rq
                    .get(dicom_dictionary_std::tags::MESSAGE_ID)
                    .and_then(|e| e.to_int::<u16>().ok())
                else {
                    return;
                };
                let rsp = response_command(0x8030, id, "1.2.840.10008.1.1", 0x0000, true);
                conn.send_message(pc, &rsp, None).await;
                // (0010,4000) LT, implicit VR, as long as the data set is to be.
                let mut data = vec![0x10, 0x00, 0x00, 0x40];
                data.extend_from_slice(&((size - 8) as u32).to_le_bytes());
                data.resize(size, b'A');
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
                    written.fetch_add(chunk.len(), Ordering::Relaxed);
                }
                conn.release().await;
            }
        })
        .await;
        let answer = probe(&peer).await;
        answer.assert_failed("echo", "protocol_error");
        assert_eq!(answer.metric("probe_dicom_status"), -1.0);
        drop(peer);
        let written = written.load(Ordering::Relaxed);
        assert!(
            written < 16 << 20,
            "{size}-byte data set: the exporter took {written} bytes of it"
        );
    }
}
