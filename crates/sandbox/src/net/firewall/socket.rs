//! The netfilter netlink socket: sends a batch of changes and reads an acknowledgement
//! for each message, or sends a dump request and reads the answers up to NLMSG_DONE.
//!
//! The kernel handles a batch inside the send and queues every answer before send
//! returns; it produces a dump's parts as they are read. The socket is bound to the
//! network namespace it was opened in.

use std::io;

use netlink_packet_core::{NetlinkBuffer, NLMSG_ALIGNTO, NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP_INTR};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use nix::sys::socket::{getsockopt, setsockopt, sockopt};
use nix::sys::time::TimeVal;

use super::uapi::NFGENMSG_LEN;
use super::wire::{self, align, Message, NLMSG_HDRLEN};

/// The largest datagram read. The kernel sizes a dump's parts to the reader's buffer but
/// never above 32 KiB, and acknowledgements carry no copy of the request (NETLINK_CAP_ACK).
const RECV_BUFFER: usize = 64 * 1024;
/// Receive-buffer room per acknowledgement of a batch: the kernel queues them all at
/// once, and a full buffer drops them (ENOBUFS). An acknowledgement takes under 1 KiB.
const ACK_ROOM: usize = 2048;
/// The answers are there within the send or the receive that asks for them: waiting
/// this long means one was lost.
const ANSWER_TIMEOUT_SECS: libc::time_t = 5;
/// Dumps interrupted by a concurrent ruleset change are retried this many times.
const DUMP_ATTEMPTS: u32 = 5;

/// A batch the kernel refused, as a whole or because of one message.
#[derive(Debug)]
pub(super) struct Refused {
    /// The first message the kernel refused; None if the batch as a whole failed (or its
    /// acknowledgements were lost).
    pub message: Option<usize>,
    pub error: io::Error,
}

pub(super) struct NftSocket {
    socket: Socket,
    /// Sequence number of the last message sent.
    seq: u32,
    buffer: Vec<u8>,
}

impl NftSocket {
    /// Opens a socket in the current network namespace.
    pub(super) fn open() -> io::Result<NftSocket> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // An error acknowledgement need not carry the request back.
        socket.set_cap_ack(true)?;
        setsockopt(
            &socket,
            sockopt::ReceiveTimeout,
            &TimeVal::new(ANSWER_TIMEOUT_SECS, 0),
        )
        .map_err(io::Error::from)?;
        Ok(NftSocket {
            socket,
            seq: 0,
            buffer: Vec::with_capacity(RECV_BUFFER),
        })
    }

    /// Applies `messages` as one batch: all of them or none.
    pub(super) fn commit(&mut self, messages: &[Message]) -> Result<(), Refused> {
        let whole = |error| Refused {
            message: None,
            error,
        };
        let begin = self.next_seq(messages.len() + 2);
        let bytes = wire::batch(messages, begin);
        self.make_room(bytes.len(), messages.len()).map_err(whole)?;
        self.send(&bytes).map_err(whole)?;

        let mut acked = vec![false; messages.len()];
        let mut waiting = messages.len();
        let mut refused: Option<(usize, io::Error)> = None;
        while waiting > 0 {
            let datagram = match self.recv() {
                Ok(datagram) => datagram,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    let lost = "acknowledgements lost, the batch may or may not be applied";
                    return Err(whole(io::Error::new(e.kind(), format!("{lost}: {e}"))));
                }
                Err(e) => return Err(whole(e)),
            };
            for reply in replies(datagram) {
                let Reply::Ack { seq, error } = reply.map_err(whole)? else {
                    continue;
                };
                if seq == begin {
                    // The batch as a whole: refused, or its commit failed.
                    match error {
                        Some(error) => return Err(whole(error)),
                        None => continue,
                    }
                }
                let index = seq.wrapping_sub(begin).wrapping_sub(1) as usize;
                let Some(seen) = acked.get_mut(index) else {
                    continue;
                };
                if std::mem::replace(seen, true) {
                    continue;
                }
                waiting -= 1;
                if let Some(error) = error {
                    if refused.as_ref().is_none_or(|(first, _)| index < *first) {
                        refused = Some((index, error));
                    }
                }
            }
        }
        match refused {
            Some((index, error)) => Err(Refused {
                message: Some(index),
                error,
            }),
            None => Ok(()),
        }
    }

    /// The attributes of every object a dump request is answered with, read again from
    /// the start if a concurrent change interrupted the dump.
    pub(super) fn dump(&mut self, request: &Message) -> io::Result<Vec<Vec<u8>>> {
        let mut attempt = 1;
        loop {
            match self.dump_once(request) {
                Ok(Some(objects)) => return Ok(objects),
                Ok(None) if attempt < DUMP_ATTEMPTS => {}
                Ok(None) => {
                    return Err(io::Error::new(
                        io::ErrorKind::Interrupted,
                        format!("interrupted by concurrent changes {DUMP_ATTEMPTS} times"),
                    ))
                }
                // The kernel could not queue a part: start again on a fresh socket, so
                // the unfinished dump cannot get in the way.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) && attempt < DUMP_ATTEMPTS => {
                    *self = NftSocket::open()?;
                }
                Err(e) => return Err(e),
            }
            attempt += 1;
        }
    }

    /// One dump; None if it was interrupted.
    fn dump_once(&mut self, request: &Message) -> io::Result<Option<Vec<Vec<u8>>>> {
        let seq = self.next_seq(1);
        let mut bytes = Vec::new();
        request.encode(seq, &mut bytes);
        self.send(&bytes)?;
        let expected = request.reply_type();
        let (mut objects, mut interrupted) = (Vec::new(), false);
        loop {
            for reply in replies(self.recv()?) {
                match reply? {
                    Reply::Object {
                        seq: s,
                        kind,
                        flags,
                        payload,
                    } if s == seq => {
                        interrupted |= flags & NLM_F_DUMP_INTR != 0;
                        if kind == expected {
                            objects.push(payload.get(NFGENMSG_LEN..).unwrap_or_default().to_vec());
                        }
                    }
                    Reply::Done {
                        seq: s,
                        error,
                        flags,
                    } if s == seq => {
                        interrupted |= flags & NLM_F_DUMP_INTR != 0;
                        if let Some(error) = error {
                            return Err(error);
                        }
                        return Ok((!interrupted).then_some(objects));
                    }
                    Reply::Ack { seq: s, error } if s == seq => {
                        return match error {
                            Some(error) => Err(error),
                            None => Ok((!interrupted).then_some(objects)),
                        };
                    }
                    _ => {}
                }
            }
        }
    }

    /// Reserves `count` sequence numbers and returns the first.
    fn next_seq(&mut self, count: usize) -> u32 {
        let first = self.seq.wrapping_add(1);
        self.seq = self.seq.wrapping_add(count as u32);
        first
    }

    /// Grows the socket's buffers, if need be, to send `len` bytes at once and to hold
    /// `acks` acknowledgements.
    fn make_room(&self, len: usize, acks: usize) -> io::Result<()> {
        // The kernel refuses a message longer than the send buffer (less 32 bytes).
        let send = len + 64;
        if getsockopt(&self.socket, sockopt::SndBuf)? < send {
            setsockopt(&self.socket, sockopt::SndBufForce, &send)?;
        }
        let receive = acks * ACK_ROOM;
        if getsockopt(&self.socket, sockopt::RcvBuf)? < receive {
            setsockopt(&self.socket, sockopt::RcvBufForce, &receive)?;
        }
        Ok(())
    }

    fn send(&self, bytes: &[u8]) -> io::Result<()> {
        loop {
            match self.socket.send(bytes, 0) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// One datagram.
    fn recv(&mut self) -> io::Result<&[u8]> {
        loop {
            self.buffer.clear();
            match self.socket.recv(&mut self.buffer, libc::MSG_TRUNC) {
                Ok(len) if len > self.buffer.len() => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("an answer of {len} bytes, over the {RECV_BUFFER} expected"),
                    ))
                }
                Ok(_) => return Ok(&self.buffer),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer from the kernel in {ANSWER_TIMEOUT_SECS} s"),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A message from the kernel.
enum Reply<'a> {
    /// NLMSG_ERROR: an acknowledgement, or with `error` a refusal.
    Ack { seq: u32, error: Option<io::Error> },
    /// NLMSG_DONE: the end of a dump, which may have failed.
    Done {
        seq: u32,
        flags: u16,
        error: Option<io::Error>,
    },
    /// Anything else: an object of a dump.
    Object {
        seq: u32,
        kind: u16,
        flags: u16,
        payload: &'a [u8],
    },
}

/// The messages of a datagram.
fn replies(mut data: &[u8]) -> impl Iterator<Item = io::Result<Reply<'_>>> {
    std::iter::from_fn(move || {
        if data.len() < NLMSG_HDRLEN {
            return None;
        }
        let message = match NetlinkBuffer::new_checked(data) {
            Ok(message) => message,
            Err(e) => {
                data = &[];
                return Some(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    e.to_string(),
                )));
            }
        };
        let len = message.length() as usize;
        let (seq, kind, flags) = (
            message.sequence_number(),
            message.message_type(),
            message.flags(),
        );
        let payload = message.payload();
        data = data
            .get(align(len, usize::from(NLMSG_ALIGNTO))..)
            .unwrap_or_default();
        // NLMSG_ERROR and NLMSG_DONE start with an errno, negative or 0.
        let error = || {
            let code = i32::from_ne_bytes(payload.get(..4)?.try_into().ok()?);
            (code != 0).then(|| io::Error::from_raw_os_error(-code))
        };
        Some(Ok(match kind {
            NLMSG_ERROR => Reply::Ack {
                seq,
                error: error(),
            },
            NLMSG_DONE => Reply::Done {
                seq,
                flags,
                error: error(),
            },
            _ => Reply::Object {
                seq,
                kind,
                flags,
                payload,
            },
        }))
    })
}
