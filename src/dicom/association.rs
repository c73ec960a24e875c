//! A client association with a deadline on every step.
//!
//! dicom-ul's PDU codec does the encoding and `pdu.rs` the decoding under our caps; this
//! module owns the socket. That lets the probe time resolution, TCP connect and A-ASSOCIATE
//! apart, set TCP_NODELAY before the first byte (a DIMSE exchange otherwise stalls on Nagle's
//! algorithm and delayed ACKs), refuse a PDU larger than we announced before buffering it,
//! and bound every read and write by the probe's deadline rather than by a per-PDU timeout. dicom-ul's own client folds connect and
//! handshake errors together, which would blur the probe's failure stage.
//!
//! **Deadlines.** Every operation here returns [`ErrorKind::Timeout`] by the deadline, whatever
//! the peer sends or withholds. A peer that withholds bytes is cut off by `timeout_at` around
//! each read and write. A peer that keeps the socket busy (empty P-DATA PDUs, an endless fast
//! C-FIND answer) is not: a read of data already there completes on its first poll, so
//! `timeout_at` never looks at its timer; and when tokio's cooperative budget runs out, it runs
//! out on a read that succeeded, so the next timer (this module's, or the probe's backstop) is
//! polled without budget and stays pending while the task yields and reads on. So the clock is
//! checked before every PDU read and every write, and every PDU read spends a unit of the
//! budget, so that a busy association still yields to the other probes on its thread.
//!
//! **Memory.** What a peer can make one association hold is bounded, and refused before it is
//! buffered: one PDU of at most the `max_pdu_length` we announced (16 KiB by default, at most
//! 1 MiB), held twice while it is decoded; one command set of at most [`MAX_COMMAND_BYTES`](super::pdu::MAX_COMMAND_BYTES)
//! (16 KiB); and one data set of at most what the caller of [`Association::receive_message`]
//! accepts: none on a C-ECHO-RSP, [`MAX_IDENTIFIER_BYTES`](super::pdu::MAX_IDENTIFIER_BYTES) (64 KiB) for a C-FIND match, which
//! the caller then parses. With the defaults that is about 200 KiB per association (2.2 MiB
//! with the largest `max_pdu_length`), whatever the peer announces or sends.
//!
//! **Peer identity.** The implementation class UID and version name of the A-ASSOCIATE-AC
//! become label values, so they are checked when the AC is read (`pdu.rs`): a UID of 1–64 digits and dots
//! (PS3.5 9.1), a name of 1–16 printable ISO 646 characters (PS3.7 D.3.3.2); anything else
//! fails the association as a protocol error. A missing item leaves its label empty.
//!
//! An association is released with [`Association::release`]; dropped any other way it sends
//! A-ABORT (best effort, without waiting) and closes the socket.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use dicom_ul::pdu::{
    AssociationRQ, PDataValue, PDataValueType, Pdu, PresentationContextProposed,
    PresentationContextResultReason, UserVariableItem,
};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::pdu::{
    decode_pdu, pdata_values, pdu_length, peer_info, Message, MessageAssembly, PeerInfo,
};
use super::tls::Stream;
use super::{Error, ErrorKind, Step, EXPLICIT_VR_LE, IMPLICIT_VR_LE};
use crate::target::Host;

/// Our implementation class UID, sent in every A-ASSOCIATE-RQ.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.329689868212047313099089035201704057799";
/// Our implementation version name (at most 16 characters).
pub const IMPLEMENTATION_VERSION_NAME: &str = concat!("PACS_EXP_", env!("CARGO_PKG_VERSION"));

const APPLICATION_CONTEXT: &str = dicom_dictionary_std::uids::DICOM_APPLICATION_CONTEXT;
/// How long an A-ABORT over TLS may take in the background.
const ABORT_GRACE: Duration = Duration::from_secs(1);
/// A-ABORT, service user, no reason.
const ABORT_PDU: [u8; 10] = [0x07, 0, 0, 0, 0, 4, 0, 0, 0, 0];

/// What to ask of the peer.
#[derive(Clone)]
pub struct AssociationOptions<'a> {
    pub calling_aet: &'a str,
    pub called_aet: &'a str,
    /// Abstract syntaxes to propose, one presentation context each.
    pub abstract_syntaxes: &'a [&'a str],
    /// The largest P-DATA PDU we accept.
    pub max_pdu_length: u32,
    /// Which resolved addresses may be connected to; `None` allows all.
    pub address_filter: Option<&'a (dyn Fn(&SocketAddr) -> bool + Send + Sync)>,
    /// Told each step as it begins (resolve, connect, TLS, associate), so that whoever waits
    /// on the association knows where it stands before it ends.
    pub on_step: Option<&'a (dyn Fn(Step) + Send + Sync)>,
    /// DICOM over TLS, when set.
    pub tls: Option<TlsOptions>,
}

/// What a TLS association needs.
#[derive(Clone)]
pub struct TlsOptions {
    pub config: Arc<rustls::ClientConfig>,
    /// The name the peer's certificate must carry.
    pub server_name: ServerName<'static>,
}

/// How long each step took; steps not reached stay zero.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    pub resolve: Duration,
    pub connect: Duration,
    /// The TLS handshake, when there is one.
    pub tls: Duration,
    /// The earliest expiry of the peer's certificates (Unix seconds), once TLS is up; kept
    /// even when the association is then refused.
    pub tls_expiry: Option<i64>,
    /// From the start of TCP connect until A-ASSOCIATE-AC.
    pub associate: Duration,
}

/// A presentation context the peer accepted.
#[derive(Clone, Debug)]
pub struct AcceptedContext {
    pub id: u8,
    pub abstract_syntax: String,
    pub transfer_syntax: String,
}

pub struct Association {
    stream: Stream,
    deadline: Instant,
    local_max_pdu: u32,
    peer_max_pdu: u32,
    contexts: Vec<AcceptedContext>,
    peer: PeerInfo,
    /// PDVs received but not yet consumed.
    pending: VecDeque<PDataValue>,
    /// Bytes read but not yet taken as a PDU: at most one PDU and [`READ_CHUNK`] more.
    inbox: Vec<u8>,
    released: bool,
}

/// The most read from the socket at a time beyond what the PDU being read still needs: one
/// read usually brings a whole small PDU (header and body), and a peer can make the inbox hold
/// no more than the PDU's declared (and checked) length plus this.
const READ_CHUNK: usize = 8 * 1024;

/// Resolves a host to socket addresses under the deadline.
pub async fn resolve(host: &Host, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, Error> {
    let name = match host {
        Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, port)]),
        Host::Name(name) => name.as_str(),
    };
    let addrs = timeout_at(deadline, tokio::net::lookup_host((name, port)))
        .await
        .map_err(|_| Error::new(Step::Resolve, ErrorKind::Timeout))?
        .map_err(|e| Error::new(Step::Resolve, ErrorKind::Resolve(e)))?
        .collect::<Vec<_>>();
    if addrs.is_empty() {
        return Err(Error::new(Step::Resolve, ErrorKind::NoAddress));
    }
    Ok(addrs)
}

impl Association {
    /// Resolves, connects and associates, recording how long each step took in `timings`
    /// (also when a step fails).
    pub async fn establish(
        host: &Host,
        port: u16,
        options: &AssociationOptions<'_>,
        deadline: Instant,
        timings: &mut Timings,
    ) -> Result<Association, Error> {
        let step = |step: Step| {
            if let Some(on_step) = options.on_step {
                on_step(step);
            }
        };
        step(Step::Resolve);
        let start = Instant::now();
        let addrs = resolve(host, port, deadline).await;
        timings.resolve = start.elapsed();
        let mut addrs = addrs?;
        if let Some(allowed) = options.address_filter {
            addrs.retain(|a| allowed(a));
            if addrs.is_empty() {
                return Err(Error::new(Step::Resolve, ErrorKind::NotAllowed));
            }
        }

        step(Step::Connect);
        let connect_start = Instant::now();
        let stream = connect_any(&addrs, deadline).await;
        timings.connect = connect_start.elapsed();
        let stream = stream?;
        // Without this every request waits for the peer's delayed ACK of the previous one.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let stream = match &options.tls {
            None => Stream::Plain(stream),
            Some(tls) => {
                step(Step::Tls);
                past(deadline, Step::Tls)?;
                let handshake_start = Instant::now();
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let handshake =
                    timeout_at(deadline, connector.connect(tls.server_name.clone(), stream)).await;
                timings.tls = handshake_start.elapsed();
                let stream = handshake
                    .map_err(|_| Error::new(Step::Tls, ErrorKind::Timeout))?
                    .map_err(|e| Error::new(Step::Tls, ErrorKind::TlsHandshake(e)))?;
                let expiry = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(super::tls::earliest_expiry);
                timings.tls_expiry = expiry;
                Stream::Tls(Box::new(stream))
            }
        };

        let mut association = Association {
            stream,
            deadline,
            local_max_pdu: options.max_pdu_length,
            peer_max_pdu: 0,
            contexts: Vec::new(),
            peer: PeerInfo::default(),
            pending: VecDeque::new(),
            inbox: Vec::new(),
            released: false,
        };
        step(Step::Associate);
        let result = association.associate(options).await;
        timings.associate = connect_start.elapsed();
        result.map(|()| association)
    }

    async fn associate(&mut self, options: &AssociationOptions<'_>) -> Result<(), Error> {
        let proposed: Vec<PresentationContextProposed> = options
            .abstract_syntaxes
            .iter()
            .enumerate()
            .map(|(i, syntax)| PresentationContextProposed {
                id: (2 * i + 1) as u8,
                abstract_syntax: syntax.to_string(),
                transfer_syntaxes: vec![EXPLICIT_VR_LE.to_string(), IMPLICIT_VR_LE.to_string()],
            })
            .collect();
        let request = Pdu::AssociationRQ(AssociationRQ {
            protocol_version: 1,
            calling_ae_title: options.calling_aet.to_string(),
            called_ae_title: options.called_aet.to_string(),
            application_context_name: APPLICATION_CONTEXT.to_string(),
            presentation_contexts: proposed.clone(),
            user_variables: vec![
                UserVariableItem::MaxLength(options.max_pdu_length),
                UserVariableItem::ImplementationClassUID(IMPLEMENTATION_CLASS_UID.to_string()),
                UserVariableItem::ImplementationVersionName(
                    IMPLEMENTATION_VERSION_NAME.to_string(),
                ),
            ],
        });
        self.send_pdu(Step::Associate, &request).await?;

        let accept = match self.receive_pdu(Step::Associate).await? {
            Pdu::AssociationAC(accept) => accept,
            Pdu::AssociationRJ(reject) => {
                let (rejection, detail) = super::Rejection::of(&reject);
                return Err(Error::new(
                    Step::Associate,
                    ErrorKind::Rejected { rejection, detail },
                ));
            }
            Pdu::AbortRQ { source } => {
                return Err(Error::new(Step::Associate, ErrorKind::Aborted(source)))
            }
            other => {
                return Err(Error::protocol(
                    Step::Associate,
                    format!("expected A-ASSOCIATE-AC, got {}", other.short_description()),
                ))
            }
        };
        self.peer = peer_info(&accept.user_variables)
            .map_err(|detail| Error::protocol(Step::Associate, detail))?;
        // 0 means "no limit"; keep our writes reasonable anyway. A P-DATA PDU needs room for
        // its 6-byte PDV header and at least one byte.
        self.peer_max_pdu = match self.peer.max_pdu_length {
            0 => 1 << 20,
            n => n.clamp(7, 1 << 20),
        };
        self.contexts = accept
            .presentation_contexts
            .iter()
            .filter(|c| c.reason == PresentationContextResultReason::Acceptance)
            .filter_map(|c| {
                let proposal = proposed.iter().find(|p| p.id == c.id)?;
                let ts = c.transfer_syntax.trim_end_matches(['\0', ' ']).to_string();
                proposal
                    .transfer_syntaxes
                    .contains(&ts)
                    .then(|| AcceptedContext {
                        id: c.id,
                        abstract_syntax: proposal.abstract_syntax.clone(),
                        transfer_syntax: ts,
                    })
            })
            .collect();
        if self.contexts.is_empty() {
            return Err(Error::new(
                Step::Associate,
                ErrorKind::NoPresentationContext,
            ));
        }
        Ok(())
    }

    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// The accepted presentation context for an abstract syntax.
    pub fn context_for(&self, abstract_syntax: &str) -> Option<&AcceptedContext> {
        self.contexts
            .iter()
            .find(|c| c.abstract_syntax == abstract_syntax)
    }

    /// Sends a DIMSE message: the command set, then the data set if any, each split into
    /// PDVs that fit the peer's maximum PDU length, in a single write.
    pub async fn send_message(
        &mut self,
        presentation_context_id: u8,
        command: &[u8],
        data: Option<&[u8]>,
    ) -> Result<(), Error> {
        // A P-DATA PDU of one PDV carries 6 bytes of PDV header besides the fragment.
        let fragment = (self.peer_max_pdu - 6) as usize;
        let mut pdus = Vec::new();
        let parts = [
            (PDataValueType::Command, Some(command)),
            (PDataValueType::Data, data),
        ];
        for (value_type, bytes) in parts {
            let Some(bytes) = bytes else { continue };
            let chunks: Vec<&[u8]> = if bytes.is_empty() {
                vec![bytes]
            } else {
                bytes.chunks(fragment).collect()
            };
            let last = chunks.len() - 1;
            for (i, chunk) in chunks.into_iter().enumerate() {
                let pdu = Pdu::PData {
                    data: vec![PDataValue {
                        presentation_context_id,
                        value_type: value_type.clone(),
                        is_last: i == last,
                        data: chunk.to_vec(),
                    }],
                };
                dicom_ul::write_pdu(&mut pdus, &pdu).map_err(|e| {
                    Error::protocol(Step::Exchange, format!("cannot encode PDU: {e}"))
                })?;
            }
        }
        self.write_all(Step::Exchange, &pdus).await
    }

    /// Receives one DIMSE message on `presentation_context_id` (the context of the request it
    /// answers), assembling PDVs by type: a PDU may carry the command and the data set
    /// together, or either may be split across many PDUs.
    ///
    /// `max_data_set` is the largest data set the caller accepts, in bytes: 0 for a message
    /// that carries none (a C-ECHO-RSP), [`MAX_IDENTIFIER_BYTES`](super::pdu::MAX_IDENTIFIER_BYTES) for a C-FIND match. A command
    /// that announces a data set where none is accepted, and a data set or command set that
    /// would grow past its cap, are protocol errors the moment they arrive, before anything
    /// more is buffered.
    pub async fn receive_message(
        &mut self,
        presentation_context_id: u8,
        max_data_set: usize,
    ) -> Result<Message, Error> {
        let mut assembly = MessageAssembly::new(presentation_context_id, max_data_set);
        loop {
            let value = self.next_pdv().await?;
            if let Some(message) = assembly.push(value)? {
                return Ok(message);
            }
        }
    }

    /// The next PDV: one left over from the last P-DATA PDU (which may carry PDVs of more than
    /// one message), or the first of a new one.
    async fn next_pdv(&mut self) -> Result<PDataValue, Error> {
        loop {
            self.check_deadline(Step::Exchange)?;
            if let Some(value) = self.pending.pop_front() {
                return Ok(value);
            }
            let pdu = self.receive_pdu(Step::Exchange).await?;
            self.pending.extend(pdata_values(pdu)?);
        }
    }

    /// A-RELEASE: sends the request, waits for the reply, closes the socket. On any failure
    /// the association is aborted instead.
    pub async fn release(mut self) -> Result<(), Error> {
        self.send_pdu(Step::Release, &Pdu::ReleaseRQ).await?;
        loop {
            match self.receive_pdu(Step::Release).await? {
                Pdu::ReleaseRP => break,
                // A release collision: the peer asked too. Answer it; we are done either way.
                Pdu::ReleaseRQ => {
                    self.send_pdu(Step::Release, &Pdu::ReleaseRP).await?;
                    break;
                }
                // Late P-DATA may still arrive after our request; it is no longer of interest.
                Pdu::PData { .. } => continue,
                Pdu::AbortRQ { source } => {
                    return Err(Error::new(Step::Release, ErrorKind::Aborted(source)))
                }
                other => {
                    return Err(Error::protocol(
                        Step::Release,
                        format!("expected A-RELEASE-RP, got {}", other.short_description()),
                    ))
                }
            }
        }
        self.released = true;
        // TLS says goodbye (close_notify); a plain socket's FIN goes with the close on drop.
        if let Stream::Tls(_) = self.stream {
            let _ = timeout_at(self.deadline, self.stream.shutdown()).await;
        }
        Ok(())
    }

    /// Aborts the association: A-ABORT if the socket takes it right away, then close.
    pub fn abort(self) {
        drop(self)
    }

    async fn send_pdu(&mut self, step: Step, pdu: &Pdu) -> Result<(), Error> {
        let mut bytes = Vec::new();
        dicom_ul::write_pdu(&mut bytes, pdu)
            .map_err(|e| Error::protocol(step, format!("cannot encode PDU: {e}")))?;
        self.write_all(step, &bytes).await
    }

    async fn write_all(&mut self, step: Step, bytes: &[u8]) -> Result<(), Error> {
        self.check_deadline(step)?;
        timeout_at(self.deadline, self.stream.write_all(bytes))
            .await
            .map_err(|_| Error::new(step, ErrorKind::Timeout))?
            .map_err(|e| io_error(step, e))
    }

    /// Reads one whole PDU. The length in its header is checked before anything is buffered,
    /// so a peer announcing gigabytes cannot make us allocate them.
    ///
    /// A peer that keeps sending (empty P-DATA PDUs, an endless answer) never makes a read
    /// wait, so the deadline is checked here, before each PDU, and each PDU spends tokio's
    /// cooperative budget so that the task yields to others now and then.
    async fn receive_pdu(&mut self, step: Step) -> Result<Pdu, Error> {
        tokio::task::consume_budget().await;
        self.check_deadline(step)?;
        if let Some(tcp) = self.stream.tcp() {
            quick_ack(tcp);
        }
        self.fill(step, 6).await?;
        let mut header = [0u8; 6];
        header.copy_from_slice(&self.inbox[..6]);
        let length = pdu_length(step, &header, self.local_max_pdu)?;
        self.fill(step, 6 + length).await?;
        let pdu = decode_pdu(step, &self.inbox[..6 + length]);
        self.inbox.drain(..6 + length);
        pdu
    }

    /// `Timeout` once the deadline has passed.
    fn check_deadline(&self, step: Step) -> Result<(), Error> {
        past(self.deadline, step)
    }

    /// Reads until the inbox holds `wanted` bytes, by the deadline; each read asks for what is
    /// still missing plus [`READ_CHUNK`] at most.
    async fn fill(&mut self, step: Step, wanted: usize) -> Result<(), Error> {
        while self.inbox.len() < wanted {
            let missing = wanted - self.inbox.len();
            self.inbox.reserve(missing + READ_CHUNK);
            let read = (&mut self.stream).take((missing + READ_CHUNK) as u64);
            let mut read = std::pin::pin!(read);
            match timeout_at(self.deadline, read.read_buf(&mut self.inbox)).await {
                Err(_) => return Err(Error::new(step, ErrorKind::Timeout)),
                Ok(Ok(0)) => return Err(Error::new(step, ErrorKind::Closed)),
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(Error::new(step, ErrorKind::Closed))
                }
                Ok(Err(e)) => return Err(io_error(step, e)),
            }
        }
        Ok(())
    }
}

impl Drop for Association {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        match std::mem::replace(&mut self.stream, Stream::Closed) {
            // Best effort and non-blocking: a fresh socket's send buffer takes 10 bytes.
            Stream::Plain(tcp) => {
                let _ = tcp.try_write(&ABORT_PDU);
            }
            // TLS needs an async write: done in the background, bounded, without waiting.
            Stream::Tls(mut tls) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let _ = tokio::time::timeout(ABORT_GRACE, async {
                            tls.write_all(&ABORT_PDU).await?;
                            tls.shutdown().await
                        })
                        .await;
                    });
                }
            }
            Stream::Closed => {}
        }
    }
}

/// `Timeout` in `step` once `deadline` has passed. `timeout_at` alone does not do this: it
/// looks at its timer only when the operation it wraps has to wait.
fn past(deadline: Instant, step: Step) -> Result<(), Error> {
    if Instant::now() >= deadline {
        Err(Error::new(step, ErrorKind::Timeout))
    } else {
        Ok(())
    }
}

/// Tries each address in turn. Each attempt gets an equal share of the time left, so a
/// black-holed first address (often an IPv6 one) does not use up the whole deadline.
async fn connect_any(addrs: &[SocketAddr], deadline: Instant) -> Result<TcpStream, Error> {
    let mut last = Error::new(Step::Connect, ErrorKind::NoAddress);
    for (i, addr) in addrs.iter().enumerate() {
        past(deadline, Step::Connect)?;
        let left = deadline.saturating_duration_since(Instant::now());
        let share = left / (addrs.len() - i) as u32;
        match timeout_at(Instant::now() + share, TcpStream::connect(addr)).await {
            Err(_) => {
                tracing::debug!(%addr, "connect timed out");
                last = Error::new(Step::Connect, ErrorKind::Timeout);
            }
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => {
                tracing::debug!(%addr, error = %e, "connect failed");
                last = Error::new(Step::Connect, ErrorKind::Io(e));
            }
        }
    }
    Err(last)
}

/// Asks the kernel to acknowledge the next segment at once. Peers that leave Nagle's
/// algorithm on (stock DCMTK and Orthanc) hold the tail of a response until our ACK arrives;
/// with delayed ACKs that costs ~40 ms per exchange. Linux clears the flag by itself, so it is
/// set again before every read.
fn quick_ack(stream: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = stream;
}

/// A reset or broken pipe mid-association means the peer dropped it. A TLS error after the
/// handshake (with TLS 1.3 the server judges our certificate only then) is a TLS failure.
fn io_error(step: Step, e: std::io::Error) -> Error {
    use std::io::ErrorKind as K;
    if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
        return Error::new(Step::Tls, ErrorKind::TlsHandshake(e));
    }
    match e.kind() {
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
            Error::new(step, ErrorKind::Closed)
        }
        _ => Error::new(step, ErrorKind::Io(e)),
    }
}
