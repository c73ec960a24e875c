//! Scripted DICOM peers: in-test SCPs for the faults a real server will not produce on demand
//! (silence, garbage, rejections with each reason, aborts, failure statuses, slow drips).
//!
//! A script is an async function over one accepted connection ([`Conn`]); the peer listens on
//! a free loopback port and runs the script for every connection until it is dropped.


use std::future::Future;
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_ul::pdu::{
    AssociationAC, AssociationRJ, AssociationRJResult, AssociationRJSource, AssociationRQ,
    PDataValue, PDataValueType, Pdu, PresentationContextResult, PresentationContextResultReason,
    UserVariableItem,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
pub const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";

/// How a scripted peer lays a DIMSE message out in PDUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Command and data set each in a PDU of its own (what most SCPs do).
    Separate,
    /// Command and data set as two PDVs of one PDU.
    OnePdu,
    /// Command split over two PDUs, data set over many.
    Fragmented,
    /// Every message of the answer in one PDU, PDV after PDV.
    Packed,
}

/// Encodes a data set in Implicit VR Little Endian with its own character set.
pub fn encode_dataset(object: &InMemDicomObject) -> Vec<u8> {
    let charset = object
        .get(tags::SPECIFIC_CHARACTER_SET)
        .and_then(|e| e.to_str().ok())
        .and_then(|cs| dicom_encoding::text::SpecificCharacterSet::from_code(cs.trim()))
        .unwrap_or_default();
    let mut out = Vec::new();
    object
        .write_dataset_with_ts_cs(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased(), charset)
        .expect("encodable data set");
    out
}

/// A STUDY-level match with the given UID, date, time and instance count; more attributes
/// can be put afterwards.
pub fn study_match(uid: &str, date: &str, time: &str, instances: Option<u32>) -> InMemDicomObject {
    let text =
        |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value.to_string()));
    let mut uid = uid.to_string();
    if uid.len() % 2 == 1 {
        uid.push('\0');
    }
    let mut m = InMemDicomObject::from_element_iter([
        text(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"),
        text(tags::STUDY_INSTANCE_UID, VR::UI, &uid),
        text(tags::STUDY_DATE, VR::DA, date),
        text(tags::STUDY_TIME, VR::TM, time),
    ]);
    if let Some(n) = instances {
        m.put(text(
            tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
            VR::IS,
            &n.to_string(),
        ));
    }
    m
}

/// A request a scripted SCP reads with [`Conn::next_request`].
pub enum Request {
    Find {
        pc: u8,
        message_id: u16,
        identifier: InMemDicomObject,
    },
    Release,
    /// The client went away, or sent something else.
    Closed,
}

pub struct ScriptedPeer {
    pub port: u16,
    task: JoinHandle<()>,
}

impl Drop for ScriptedPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedPeer {
    pub async fn start<F, Fut>(script: F) -> ScriptedPeer
    where
        F: Fn(Conn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let port = listener.local_addr().expect("local address").port();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(script(Conn {
                    stream,
                    buffer: Vec::new(),
                }));
            }
        });
        ScriptedPeer { port, task }
    }

    /// `AET@127.0.0.1:port`
    pub fn target(&self, aet: &str) -> String {
        format!("{aet}@127.0.0.1:{}", self.port)
    }
}

/// One accepted connection.
pub struct Conn {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

impl Conn {
    /// Reads one PDU; `None` when the client closed the connection or sent garbage.
    pub async fn read_pdu(&mut self) -> Option<Pdu> {
        loop {
            match dicom_ul::read_pdu(&self.buffer[..], dicom_ul::pdu::MAXIMUM_PDU_SIZE, false) {
                Ok(Some(pdu)) => {
                    let length = u32::from_be_bytes(self.buffer[2..6].try_into().ok()?);
                    self.buffer.drain(..6 + length as usize);
                    return Some(pdu);
                }
                Ok(None) => {}
                Err(_) => return None,
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    pub async fn write_pdu(&mut self, pdu: &Pdu) {
        let mut bytes = Vec::new();
        dicom_ul::write_pdu(&mut bytes, pdu).expect("encodable PDU");
        let _ = self.stream.write_all(&bytes).await;
    }

    pub async fn write_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Reads the A-ASSOCIATE-RQ.
    pub async fn read_request(&mut self) -> Option<AssociationRQ> {
        match self.read_pdu().await? {
            Pdu::AssociationRQ(rq) => Some(rq),
            _ => None,
        }
    }

    /// The A-ASSOCIATE-AC that accepts every proposed context with Implicit VR Little Endian.
    pub fn accept_pdu(rq: &AssociationRQ) -> Pdu {
        Pdu::AssociationAC(AssociationAC {
            protocol_version: 1,
            calling_ae_title: rq.calling_ae_title.clone(),
            called_ae_title: rq.called_ae_title.clone(),
            application_context_name: rq.application_context_name.clone(),
            presentation_contexts: rq
                .presentation_contexts
                .iter()
                .map(|pc| PresentationContextResult {
                    id: pc.id,
                    reason: PresentationContextResultReason::Acceptance,
                    transfer_syntax: IMPLICIT_VR_LE.to_string(),
                })
                .collect(),
            user_variables: vec![
                UserVariableItem::MaxLength(16384),
                UserVariableItem::ImplementationClassUID("1.2.3.4.5.6.7".to_string()),
                UserVariableItem::ImplementationVersionName("SCRIPTED_1".to_string()),
            ],
        })
    }

    /// Reads the A-ASSOCIATE-RQ and accepts it.
    pub async fn accept(&mut self) -> Option<AssociationRQ> {
        let rq = self.read_request().await?;
        self.write_pdu(&Self::accept_pdu(&rq)).await;
        Some(rq)
    }

    /// Reads the A-ASSOCIATE-RQ and rejects it.
    pub async fn reject(&mut self, result: AssociationRJResult, source: AssociationRJSource) {
        if self.read_request().await.is_some() {
            self.write_pdu(&Pdu::AssociationRJ(AssociationRJ { result, source }))
                .await;
        }
    }

    /// Reads one DIMSE message: (presentation context, command set, data set).
    pub async fn read_message(&mut self) -> Option<(u8, InMemDicomObject, Option<Vec<u8>>)> {
        let Pdu::PData { data } = self.read_pdu().await? else {
            return None;
        };
        self.read_message_from(data).await
    }

    /// What the client asks next: a C-FIND, or to release the association.
    pub async fn next_request(&mut self) -> Request {
        let values = match self.read_pdu().await {
            Some(Pdu::PData { data }) => data,
            Some(Pdu::ReleaseRQ) => return Request::Release,
            _ => return Request::Closed,
        };
        let Some((pc, command, data)) = self.read_message_from(values).await else {
            return Request::Closed;
        };
        let identifier = data.and_then(|data| {
            InMemDicomObject::read_dataset_with_ts(&data[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .ok()
        });
        match (
            command
                .get(tags::MESSAGE_ID)
                .and_then(|e| e.to_int::<u16>().ok()),
            identifier,
        ) {
            (Some(message_id), Some(identifier)) => Request::Find {
                pc,
                message_id,
                identifier,
            },
            _ => Request::Closed,
        }
    }

    /// Sends one pending response per match, then the final status.
    pub async fn answer_find(
        &mut self,
        pc: u8,
        message_id: u16,
        matches: &[InMemDicomObject],
        final_status: u16,
    ) {
        for m in matches {
            let rsp = response_command(0x8020, message_id, STUDY_ROOT_FIND, 0xFF00, true);
            self.send_message(pc, &rsp, Some(encode_dataset(m))).await;
        }
        let rsp = response_command(0x8020, message_id, STUDY_ROOT_FIND, final_status, false);
        self.send_message(pc, &rsp, None).await;
    }

    /// Reads one DIMSE message whose first PDU carried `values`.
    async fn read_message_from(
        &mut self,
        first: Vec<PDataValue>,
    ) -> Option<(u8, InMemDicomObject, Option<Vec<u8>>)> {
        let mut command = Vec::new();
        let mut data = Vec::new();
        let mut pc = 0;
        let mut command_done = false;
        let mut next = Some(first);
        loop {
            let values = match next.take() {
                Some(values) => values,
                None => {
                    let Pdu::PData { data: values } = self.read_pdu().await? else {
                        return None;
                    };
                    values
                }
            };
            for v in values {
                pc = v.presentation_context_id;
                match v.value_type {
                    PDataValueType::Command => {
                        command.extend_from_slice(&v.data);
                        command_done = v.is_last;
                    }
                    PDataValueType::Data => {
                        data.extend_from_slice(&v.data);
                        if v.is_last {
                            let cmd = parse(&command)?;
                            return Some((pc, cmd, Some(data)));
                        }
                    }
                }
            }
            if command_done {
                let cmd = parse(&command)?;
                let has_data = cmd
                    .get(tags::COMMAND_DATA_SET_TYPE)
                    .and_then(|e| e.to_int::<u16>().ok())
                    .is_some_and(|t| t != 0x0101);
                if !has_data {
                    return Some((pc, cmd, None));
                }
            }
        }
    }

    /// Sends a command set (group length added) and, optionally, a data set, each in a PDU
    /// of its own.
    pub async fn send_message(
        &mut self,
        pc: u8,
        command: &InMemDicomObject,
        data: Option<Vec<u8>>,
    ) {
        let mut pdus = vec![PDataValue {
            presentation_context_id: pc,
            value_type: PDataValueType::Command,
            is_last: true,
            data: encode_command(command),
        }];
        if let Some(data) = data {
            pdus.push(PDataValue {
                presentation_context_id: pc,
                value_type: PDataValueType::Data,
                is_last: true,
                data,
            });
        }
        for value in pdus {
            self.write_pdu(&Pdu::PData { data: vec![value] }).await;
        }
    }

    /// Sends a DIMSE message laid out in PDUs as `layout` says.
    pub async fn send_laid_out(
        &mut self,
        pc: u8,
        command: &InMemDicomObject,
        data: Option<Vec<u8>>,
        layout: Layout,
    ) {
        let command = encode_command(command);
        let pdv = |value_type, is_last, data: &[u8]| PDataValue {
            presentation_context_id: pc,
            value_type,
            is_last,
            data: data.to_vec(),
        };
        match (layout, data) {
            (Layout::OnePdu, Some(data)) => {
                self.write_pdu(&Pdu::PData {
                    data: vec![
                        pdv(PDataValueType::Command, true, &command),
                        pdv(PDataValueType::Data, true, &data),
                    ],
                })
                .await
            }
            (Layout::Fragmented, data) => {
                // The command in two PDUs, the data set in one PDU per 7 bytes.
                let (a, b) = command.split_at(command.len() / 2);
                self.write_pdu(&Pdu::PData {
                    data: vec![pdv(PDataValueType::Command, false, a)],
                })
                .await;
                self.write_pdu(&Pdu::PData {
                    data: vec![pdv(PDataValueType::Command, true, b)],
                })
                .await;
                if let Some(data) = data {
                    let chunks: Vec<&[u8]> = data.chunks(7).collect();
                    for (i, chunk) in chunks.iter().enumerate() {
                        let last = i + 1 == chunks.len();
                        self.write_pdu(&Pdu::PData {
                            data: vec![pdv(PDataValueType::Data, last, chunk)],
                        })
                        .await;
                    }
                }
            }
            (_, data) => {
                self.write_pdu(&Pdu::PData {
                    data: vec![pdv(PDataValueType::Command, true, &command)],
                })
                .await;
                if let Some(data) = data {
                    self.write_pdu(&Pdu::PData {
                        data: vec![pdv(PDataValueType::Data, true, &data)],
                    })
                    .await;
                }
            }
        }
    }

    /// Reads a C-FIND-RQ; returns its presentation context, message ID, and identifier.
    pub async fn read_find(&mut self) -> Option<(u8, u16, InMemDicomObject)> {
        let (pc, command, data) = self.read_message().await?;
        let message_id = command.get(tags::MESSAGE_ID)?.to_int::<u16>().ok()?;
        let identifier =
            InMemDicomObject::read_dataset_with_ts(&data?[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .ok()?;
        Some((pc, message_id, identifier))
    }

    /// Answers the next C-FIND-RQ: one pending response per match (laid out as `layout`),
    /// then `final_status`. Returns the identifier that was asked.
    pub async fn find_response(
        &mut self,
        matches: &[InMemDicomObject],
        final_status: u16,
        layout: Layout,
    ) -> Option<InMemDicomObject> {
        let (pc, message_id, identifier) = self.read_find().await?;
        if layout == Layout::Packed {
            let pdv = |value_type, data| PDataValue {
                presentation_context_id: pc,
                value_type,
                is_last: true,
                data,
            };
            let mut values = Vec::new();
            for m in matches {
                let rsp = response_command(0x8020, message_id, STUDY_ROOT_FIND, 0xFF00, true);
                values.push(pdv(PDataValueType::Command, encode_command(&rsp)));
                values.push(pdv(PDataValueType::Data, encode_dataset(m)));
            }
            let rsp = response_command(0x8020, message_id, STUDY_ROOT_FIND, final_status, false);
            values.push(pdv(PDataValueType::Command, encode_command(&rsp)));
            self.write_pdu(&Pdu::PData { data: values }).await;
            return Some(identifier);
        }
        for m in matches {
            let rsp = response_command(0x8020, message_id, STUDY_ROOT_FIND, 0xFF00, true);
            self.send_laid_out(pc, &rsp, Some(encode_dataset(m)), layout)
                .await;
        }
        let rsp = response_command(0x8020, message_id, STUDY_ROOT_FIND, final_status, false);
        self.send_laid_out(pc, &rsp, None, layout).await;
        Some(identifier)
    }

    /// Answers a C-ECHO-RQ with the given status.
    pub async fn echo_response(&mut self, status: u16) -> Option<()> {
        let (pc, rq, _) = self.read_message().await?;
        let message_id = rq.get(tags::MESSAGE_ID)?.to_int::<u16>().ok()?;
        let rsp = response_command(0x8030, message_id, "1.2.840.10008.1.1", status, false);
        self.send_message(pc, &rsp, None).await;
        Some(())
    }

    /// Answers A-RELEASE-RQ with A-RELEASE-RP.
    pub async fn release(&mut self) {
        if let Some(Pdu::ReleaseRQ) = self.read_pdu().await {
            self.write_pdu(&Pdu::ReleaseRP).await;
        }
    }

    /// Reads and ignores everything until the client goes away: a peer that says nothing.
    pub async fn hold(&mut self) {
        let mut sink = [0u8; 4096];
        while let Ok(n) = self.stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    }

    /// Writes `bytes` one at a time, `gap` apart.
    pub async fn drip(&mut self, bytes: &[u8], gap: Duration) {
        for byte in bytes {
            if self.stream.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(gap).await;
        }
    }
}

pub fn encode_pdu(pdu: &Pdu) -> Vec<u8> {
    let mut bytes = Vec::new();
    dicom_ul::write_pdu(&mut bytes, pdu).expect("encodable PDU");
    bytes
}

fn parse(command: &[u8]) -> Option<InMemDicomObject> {
    InMemDicomObject::read_dataset_with_ts(command, &IMPLICIT_VR_LITTLE_ENDIAN.erased()).ok()
}

/// A response command set: command field, message ID responded to, status.
pub fn response_command(
    command_field: u16,
    message_id: u16,
    sop_class: &str,
    status: u16,
    has_data: bool,
) -> InMemDicomObject {
    let mut uid = sop_class.to_string();
    if uid.len() % 2 == 1 {
        uid.push('\0');
    }
    InMemDicomObject::from_element_iter([
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(uid),
        ),
        DataElement::new(
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(command_field),
        ),
        DataElement::new(
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            VR::US,
            PrimitiveValue::from(message_id),
        ),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(if has_data { 0x0000u16 } else { 0x0101 }),
        ),
        DataElement::new(tags::STATUS, VR::US, PrimitiveValue::from(status)),
    ])
}

/// A command set in Implicit VR Little Endian, with its group length.
pub fn encode_command(command: &InMemDicomObject) -> Vec<u8> {
    let mut body = Vec::new();
    command
        .write_dataset_with_ts(&mut body, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("encodable command");
    let mut out = vec![0, 0, 0, 0, 4, 0, 0, 0];
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}
