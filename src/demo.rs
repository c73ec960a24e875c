//! The built-in demo PACS: a small in-process SCP over dicom-ul's server side.
//!
//! It answers C-ECHO and STUDY-level Study Root C-FIND with the matching a transfer check
//! needs: StudyDate (single date or range), StudyInstanceUID (single or list) and
//! ModalitiesInStudy; every other key is returned, not matched. `pacs_exporter --demo` runs
//! two of them (a source and a destination that lacks a few studies and holds one partially)
//! so a newcomer sees a real transfer check with nothing installed. Tests and benchmarks use it
//! where a fast, predictable peer helps. It is not a PACS: no storage, no retrieval.

use std::sync::Arc;

use chrono::{Duration as ChronoDuration, NaiveDateTime};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::text::SpecificCharacterSet;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};
use dicom_ul::association::ServerAssociationOptions;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use tokio::net::{TcpListener, TcpStream};

use crate::dicom::find::InformationModel;
use crate::dicom::message::{command_field, uid_value, Command};
use crate::dicom::pdu::{MessageAssembly, MAX_IDENTIFIER_BYTES};
use crate::dicom::query::text;
use crate::dicom::{EXPLICIT_VR_LE, IMPLICIT_VR_LE, VERIFICATION};

/// One study the demo PACS holds.
#[derive(Clone, Debug)]
pub struct DemoStudy {
    pub uid: String,
    pub patient_name: String,
    pub patient_id: String,
    pub study_id: String,
    pub accession_number: String,
    pub when: NaiveDateTime,
    pub modality: String,
    pub instances: u32,
}

/// A demo SCP's AE title and studies.
#[derive(Clone, Debug)]
pub struct DemoPacs {
    pub aet: String,
    pub studies: Vec<DemoStudy>,
}

/// Today's studies of a source PACS: `count` of them, one every 20 minutes back from `now`,
/// so that the newest are still within a 10-minute grace period.
pub fn sample_studies(count: usize, now: NaiveDateTime) -> Vec<DemoStudy> {
    const NAMES: [&str; 6] = [
        "Müller^Jürgen",
        "Иванова^Анна",
        "Dupont^Amélie",
        "Smith^John",
        "Петров^Сергей",
        "Nowak^Łucja",
    ];
    const MODALITIES: [&str; 5] = ["CT", "MR", "CR", "US", "DX"];
    (0..count)
        .map(|i| DemoStudy {
            uid: format!("2.25.8631000{i:04}"),
            patient_name: NAMES[i % NAMES.len()].to_string(),
            patient_id: format!("P{:05}", 1000 + i),
            study_id: format!("{}", i + 1),
            accession_number: format!("ACC{:06}", 500 + i),
            when: now - ChronoDuration::minutes(5 + 20 * i as i64),
            modality: MODALITIES[i % MODALITIES.len()].to_string(),
            instances: (i % 5) as u32 + 1,
        })
        .collect()
}

/// Serves `pacs` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, pacs: Arc<DemoPacs>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let pacs = pacs.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &pacs).await {
                tracing::debug!(aet = %pacs.aet, error = %e, "demo PACS: association ended with an error");
            }
        });
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A response message: its command set and, for a match, its data set.
type Response = (Vec<u8>, Option<Vec<u8>>);

async fn handle(stream: TcpStream, pacs: &DemoPacs) -> Result<(), BoxError> {
    stream.set_nodelay(true)?;
    // Only its own AE title, as real PACS answer (Orthanc with DicomCheckCalledAet,
    // dcmqrscp): a target with another is refused with A-ASSOCIATE-RJ.
    let options = ServerAssociationOptions::new()
        .accept_called_ae_title()
        .ae_title(pacs.aet.as_str())
        .with_abstract_syntax(VERIFICATION)
        .with_abstract_syntax(InformationModel::StudyRoot.sop_class())
        .with_transfer_syntax(EXPLICIT_VR_LE)
        .with_transfer_syntax(IMPLICIT_VR_LE)
        .read_timeout(std::time::Duration::from_secs(60));
    let mut association = options.establish_async(stream).await?;
    let contexts: Vec<(u8, String)> = association
        .presentation_contexts()
        .iter()
        .map(|pc| (pc.id, pc.transfer_syntax.clone()))
        .collect();

    // Requests are put together by the association layer's own PDV assembly, with its caps.
    let mut assembly: Option<MessageAssembly> = None;
    loop {
        let values = match association.receive().await? {
            Pdu::PData { data } => data,
            Pdu::ReleaseRQ => {
                association.send(&Pdu::ReleaseRP).await?;
                return Ok(());
            }
            _ => return Ok(()),
        };
        for value in values {
            let context = value.presentation_context_id;
            let pushed = assembly
                .get_or_insert_with(|| MessageAssembly::new(context, MAX_IDENTIFIER_BYTES))
                .push(value)?;
            let Some(request) = pushed else { continue };
            assembly = None;
            let explicit = contexts
                .iter()
                .any(|(id, ts)| *id == context && ts == EXPLICIT_VR_LE);
            let identifier = request.data.as_deref().unwrap_or_default();
            let responses = respond(pacs, &request.command, identifier, explicit)?;
            for (rsp_command, rsp_data) in responses {
                let mut pdvs = vec![PDataValue {
                    presentation_context_id: context,
                    value_type: PDataValueType::Command,
                    is_last: true,
                    data: rsp_command,
                }];
                if let Some(rsp_data) = rsp_data {
                    pdvs.push(PDataValue {
                        presentation_context_id: context,
                        value_type: PDataValueType::Data,
                        is_last: true,
                        data: rsp_data,
                    });
                }
                association.send(&Pdu::PData { data: pdvs }).await?;
            }
        }
    }
}

/// The responses to one request: (command set, data set) pairs.
fn respond(
    pacs: &DemoPacs,
    request: &Command,
    identifier: &[u8],
    explicit: bool,
) -> Result<Vec<Response>, BoxError> {
    let message_id = request.message_id().unwrap_or(0);
    match request.command_field() {
        Some(command_field::C_ECHO_RQ) => Ok(vec![(
            response(
                command_field::C_ECHO_RSP,
                message_id,
                VERIFICATION,
                0x0000,
                false,
            ),
            None,
        )]),
        Some(command_field::C_FIND_RQ) => {
            let ts = if explicit {
                EXPLICIT_VR_LITTLE_ENDIAN.erased()
            } else {
                IMPLICIT_VR_LITTLE_ENDIAN.erased()
            };
            crate::dicom::guard::check_data_set(identifier, explicit)?;
            let query = InMemDicomObject::read_dataset_with_ts(identifier, &ts)?;
            let sop_class = InformationModel::StudyRoot.sop_class();
            let mut out = Vec::new();
            let level = text(&query, tags::QUERY_RETRIEVE_LEVEL);
            if level.as_deref() != Some("STUDY") {
                // Identifier does not match SOP class.
                out.push((
                    response(
                        command_field::C_FIND_RSP,
                        message_id,
                        sop_class,
                        0xA900,
                        false,
                    ),
                    None,
                ));
                return Ok(out);
            }
            for study in pacs.studies.iter().filter(|s| matches(s, &query)) {
                let mut body = Vec::new();
                answer(study, &query).write_dataset_with_ts_cs(
                    &mut body,
                    &ts,
                    SpecificCharacterSet::ISO_IR_192,
                )?;
                out.push((
                    response(
                        command_field::C_FIND_RSP,
                        message_id,
                        sop_class,
                        0xFF00,
                        true,
                    ),
                    Some(body),
                ));
            }
            out.push((
                response(
                    command_field::C_FIND_RSP,
                    message_id,
                    sop_class,
                    0x0000,
                    false,
                ),
                None,
            ));
            Ok(out)
        }
        other => Err(format!("demo PACS: unsupported command field {other:?}").into()),
    }
}

fn matches(study: &DemoStudy, query: &InMemDicomObject) -> bool {
    if let Some(uids) = text(query, tags::STUDY_INSTANCE_UID) {
        if !uids
            .split('\\')
            .any(|u| u.trim_end_matches('\0') == study.uid)
        {
            return false;
        }
    }
    if let Some(range) = text(query, tags::STUDY_DATE) {
        let date = study.when.format("%Y%m%d").to_string();
        let (from, to) = range.split_once('-').unwrap_or((&range, &range));
        if (!from.is_empty() && date.as_str() < from) || (!to.is_empty() && date.as_str() > to) {
            return false;
        }
    }
    if let Some(modalities) = text(query, tags::MODALITIES_IN_STUDY) {
        if !modalities.split('\\').any(|m| m == study.modality) {
            return false;
        }
    }
    true
}

/// The match: the asked keys, filled from the study where the demo knows them.
fn answer(study: &DemoStudy, query: &InMemDicomObject) -> InMemDicomObject {
    let mut out = InMemDicomObject::new_empty();
    let put = |out: &mut InMemDicomObject, tag: Tag, vr: VR, value: String| {
        out.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    };
    put(
        &mut out,
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        "ISO_IR 192".into(),
    );
    put(&mut out, tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY".into());
    put(
        &mut out,
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        uid_value(&study.uid),
    );
    let known: [(Tag, VR, String); 8] = [
        (
            tags::STUDY_DATE,
            VR::DA,
            study.when.format("%Y%m%d").to_string(),
        ),
        (
            tags::STUDY_TIME,
            VR::TM,
            study.when.format("%H%M%S").to_string(),
        ),
        (tags::PATIENT_NAME, VR::PN, study.patient_name.clone()),
        (tags::PATIENT_ID, VR::LO, study.patient_id.clone()),
        (tags::STUDY_ID, VR::SH, study.study_id.clone()),
        (
            tags::ACCESSION_NUMBER,
            VR::SH,
            study.accession_number.clone(),
        ),
        (tags::MODALITIES_IN_STUDY, VR::CS, study.modality.clone()),
        (
            tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
            VR::IS,
            study.instances.to_string(),
        ),
    ];
    for (tag, vr, value) in known {
        if query.get(tag).is_some() {
            put(&mut out, tag, vr, value);
        }
    }
    out
}

fn response(field: u16, message_id: u16, sop_class: &str, status: u16, has_data: bool) -> Vec<u8> {
    crate::dicom::message::encode_response(field, message_id, sop_class, status, has_data)
}

/// Where the demo source PACS listens when the port is free, so that the commands a newcomer
/// copied keep working run after run.
pub const SOURCE_PORT: u16 = 11112;
/// Where the demo destination PACS listens when the port is free.
pub const DESTINATION_PORT: u16 = 11113;

/// The two demo PACS, running, and a config whose modules probe them.
pub struct Demo {
    pub config: crate::config::Config,
    /// The config's text, for a file that reloads read again.
    pub yaml: String,
    pub source: String,
    pub destination: String,
    /// What did not go as planned, e.g. a port that was taken, one line each.
    pub notes: Vec<String>,
}

/// Starts a source and a destination demo PACS on loopback, on [`SOURCE_PORT`] and
/// [`DESTINATION_PORT`] when they are free and on free ports otherwise (with a note). The
/// destination lacks three of the source's studies and holds one with fewer instances.
pub async fn start() -> std::io::Result<Demo> {
    let now = chrono::Local::now().naive_local();
    let studies = sample_studies(24, now);
    let mut kept: Vec<DemoStudy> = studies
        .iter()
        .enumerate()
        .filter(|(i, _)| ![3, 8, 15].contains(i))
        .map(|(_, s)| s.clone())
        .collect();
    if let Some(partial) = kept
        .iter_mut()
        .find(|s| s.instances > 1 && s.uid == studies[6].uid)
    {
        partial.instances -= 1;
    }
    let mut notes = Vec::new();
    let source = spawn(
        DemoPacs {
            aet: "DEMO_SOURCE".into(),
            studies,
        },
        SOURCE_PORT,
        &mut notes,
    )
    .await?;
    let destination = spawn(
        DemoPacs {
            aet: "DEMO_DEST".into(),
            studies: kept,
        },
        DESTINATION_PORT,
        &mut notes,
    )
    .await?;
    let yaml = format!(
        "# pacs_exporter --demo: modules probing the two demo PACS
# (source {source}, destination {destination}).
# Edit this file, then reload: kill -HUP <pid>, or POST /-/reload.
modules:
  echo:
    prober: echo
    timeout: 5s
  find:
    prober: find
    timeout: 10s
    find:
      query: {{ StudyDate: yesterday-today, ModalitiesInStudy: CT }}
  send_check:
    prober: send_check
    timeout: 30s
    send_check:
      destination: {destination}
      lookback: 24h
      grace: 10m
      labels: [study_id]
"
    );
    let config = crate::config::Config::parse(&yaml)
        .map_err(|e| std::io::Error::other(format!("demo config: {e}")))?;
    Ok(Demo {
        config,
        yaml,
        source,
        destination,
        notes,
    })
}

/// Serves `pacs` on 127.0.0.1:`port`, or on a free port (with a note) when that one is taken.
async fn spawn(pacs: DemoPacs, port: u16, notes: &mut Vec<String>) -> std::io::Result<String> {
    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => listener,
        Err(e) => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            notes.push(format!(
                "port {port} is not free ({e}): {} listens on port {} instead",
                pacs.aet,
                listener.local_addr()?.port()
            ));
            listener
        }
    };
    let target = format!("{}@{}", pacs.aet, listener.local_addr()?);
    tokio::spawn(serve(listener, Arc::new(pacs)));
    Ok(target)
}
