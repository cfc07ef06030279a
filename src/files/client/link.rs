//! A download link: one connection to the broker that one worker thread
//! owns, writing its piece calls and reading their replies itself.
//!
//! The general remote-call endpoint ([`crate::client::rpc::Rpc`]) reads
//! every reply whole into a buffer, hands it across threads, and the file
//! code then hashes it and copies it into the page cache. A link knows
//! what a piece reply looks like: it reads the reply's head, then the
//! data bytes a chunk at a time into one buffer it keeps, hashes each
//! chunk there while it is still in the CPU cache, and writes it into the
//! part file: the same two copies, socket to buffer and buffer to page
//! cache, that a plain copy from a socket into a file makes.

use crate::client::ConnectOptions;
use crate::client::rpc::{call_error, write_frame};
use crate::files::hash::{PieceHash, PieceHasher};
use crate::files::part;
use crate::files::wire::{self, Fields, TAG_MAP, piece_prefix};
use crate::files::{Error, Result};
use crate::transport::Address;
use crate::transport::split::{self, SplitReader, SplitWriter};
use crate::wire::{MAX_JSON, PREFIX_LEN, parse_prefix};
use serde_json::{Map, Value as Json, json};
use std::fs::File;
use std::io::{self, Read};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A broker silent this long while a call is out is taken to be gone.
const MAXAGE: Duration = Duration::from_secs(30);

/// Bytes read, hashed and written per round: small enough to stay in a
/// core's cache from the read to the write, large enough that the system
/// calls and turns at the file's lock are few. On a 2-core VM the client
/// spent 1.9-2.2 CPU-s on 2.15 GB in 1 MiB rounds, 3.2 in 256 KiB ones,
/// and 3.2-3.4 reading into a mapping of the part instead (the kernel
/// zeroes and maps each new page first): `docs/files.md`, "Parallelism".
const READ_CHUNK: usize = 1 << 20;

/// How long a piece call may wait for a free file-server worker.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(120);

/// One connection of a download, used by one thread.
pub struct Link {
    reader: SplitReader,
    writer: SplitWriter,
    /// The file server's name, and its `read` function.
    server: String,
    function: String,
    next_id: u64,
    last_heard: Instant,
    ping_out: bool,
    /// Read buffer for heads, tails and piece data.
    buf: Vec<u8>,
}

/// Where a piece's data goes.
pub struct Sink<'a> {
    /// The part file, and the offset of the piece's first byte in it.
    pub file: &'a File,
    pub off: u64,
    /// Held while bytes are written into the file: one writer at a time
    /// sleeps the others, where the file system's lock would have them
    /// spin.
    pub writing: &'a Mutex<()>,
    /// Hashes the piece as it arrives.
    pub hasher: PieceHasher,
}

/// A piece reply's content: the hash the server sent, and the hash of the
/// bytes that arrived, or why they could not be written.
pub struct Arrived {
    pub claimed: PieceHash,
    pub stored: io::Result<PieceHash>,
}

/// What a reply to one of this link's calls holds, its payload not yet read.
pub enum Reply {
    /// Call `id` succeeded: a payload of `len` bytes follows.
    Ok { id: u64, len: usize },
    /// Call `id` failed (its payload already read).
    Failed { id: u64, error: Error },
}

impl Link {
    /// Connects to the broker at `address` (with the same token and TLS
    /// settings as every client) for calls to file server `server`.
    pub fn connect(address: &str, server: &str, connect: &ConnectOptions) -> Result<Link> {
        let addr = Address::parse(address).map_err(Error::InvalidInput)?;
        let (reader, writer) = split::open(&addr, &connect.tls)
            .map_err(|e| Error::Connection(format!("cannot connect to {addr}: {e}")))?;
        let mut link = Link {
            reader,
            writer,
            server: server.to_owned(),
            function: wire::function(server, wire::READ),
            next_id: 1,
            last_heard: Instant::now(),
            ping_out: false,
            buf: Vec::new(),
        };
        link.reader
            .set_read_timeout(Some(MAXAGE / 4))
            .map_err(|e| lost(&e))?;
        let mut hs = connect.handshake();
        // A side connection: it never syncs, so it takes no broadcasts.
        hs["broadcasts"] = json!(false);
        link.write(&hs, &[])?;
        let reply = loop {
            let (head, len) = link.read_head()?;
            link.skip(len)?;
            if head.get("meta").and_then(Json::as_bool) != Some(true) {
                break head;
            }
        };
        let reply = crate::client::check_status(reply).map_err(Error::from)?;
        let extensions = crate::client::announced_extensions(&reply).map_err(Error::from)?;
        crate::client::require(
            extensions.as_deref(),
            crate::proto::extensions::RPC,
            "remote calls",
        )
        .map_err(Error::from)?;
        Ok(link)
    }

    /// Sends a call of the server's `read` with encoded `args`; its id.
    pub fn request(&mut self, args: &[u8]) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let head = json!({
            "command": "call",
            "function": self.function,
            "id": id,
            "timeout": QUEUE_TIMEOUT.as_secs_f64() * 1000.0,
        });
        self.write(&head, args)?;
        Ok(id)
    }

    /// Reads up to the next reply to one of this link's calls, passing
    /// over anything else the broker sends (pings' answers, notices).
    pub fn next_reply(&mut self) -> Result<Reply> {
        loop {
            let (head, len) = self.read_head()?;
            let Some(id) = head.get("result").and_then(Json::as_u64) else {
                self.skip(len)?;
                continue;
            };
            if head.get("status").and_then(Json::as_i64) == Some(0) {
                return Ok(Reply::Ok { id, len });
            }
            self.skip(len)?;
            let error = Error::from_call(call_error(&head), &self.server);
            return Ok(Reply::Failed { id, error });
        }
    }

    /// Reads a successful reply's payload of `len` bytes, a piece of
    /// `want` bytes, into `sink`. A reply of another shape is read whole
    /// and its data taken from there. Local failures (writing the file)
    /// are in [`Arrived::stored`]; the reply is read to its end anyway,
    /// so the link goes on. A fatal error ([`Error::is_fatal`]) means the
    /// link is lost; another, that the reply was malformed (and read).
    pub fn read_piece(&mut self, len: usize, want: u64, sink: &mut Sink<'_>) -> Result<Arrived> {
        let Ok(prefix) = piece_prefix(want, 2) else {
            return self.read_other(0, len, want, sink);
        };
        let data = want as usize;
        if len < prefix.len() + data {
            return self.read_other(0, len, want, sink);
        }
        self.fill(prefix.len())?;
        if self.buf[..prefix.len()] != prefix[..] {
            return self.read_other(prefix.len(), len, want, sink);
        }
        let stored = self.sink_data(data, sink)?;
        // The entries after the data: the map with them alone is parsed.
        let rest = len - prefix.len() - data;
        self.fill(rest)?;
        let mut tail = Vec::with_capacity(5 + rest);
        tail.push(TAG_MAP);
        tail.extend_from_slice(&1u32.to_be_bytes());
        tail.extend_from_slice(&self.buf[..rest]);
        let claimed = Fields::parse(&tail).and_then(|f| f.hash("hash"))?;
        Ok(Arrived { claimed, stored })
    }

    /// A reply whose layout is not the usual one, its first `have` bytes
    /// already at the start of the buffer: read whole, and its fields
    /// taken from there.
    fn read_other(
        &mut self,
        have: usize,
        len: usize,
        want: u64,
        sink: &mut Sink<'_>,
    ) -> Result<Arrived> {
        let mut whole = std::mem::take(&mut self.buf);
        whole.truncate(have);
        let r = self.parse_other(&mut whole, len, want, sink);
        self.buf = whole;
        r
    }

    /// [`Link::read_other`] with the buffer in hand.
    fn parse_other(
        &mut self,
        whole: &mut Vec<u8>,
        len: usize,
        want: u64,
        sink: &mut Sink<'_>,
    ) -> Result<Arrived> {
        let have = whole.len();
        whole.resize(len, 0);
        self.read_full_into(&mut whole[have..])?;
        let f = Fields::parse(whole)?;
        let (data, claimed) = (f.bytes("data")?, f.hash("hash")?);
        if data.len() as u64 != want {
            return Err(Error::Io(format!(
                "a piece came with {} bytes instead of {want}",
                data.len()
            )));
        }
        sink.hasher.update(data);
        let _g = sink.writing.lock().unwrap_or_else(|p| p.into_inner());
        let stored = part::write_at(sink.file, data, sink.off).map(|()| sink.hasher.finish());
        Ok(Arrived { claimed, stored })
    }

    /// Moves the next `len` bytes of the socket into the sink's file,
    /// hashing them on the way. After a failed write the rest is still
    /// read, to keep the link in step.
    fn sink_data(&mut self, len: usize, sink: &mut Sink<'_>) -> Result<io::Result<PieceHash>> {
        let mut failed: Option<io::Error> = None;
        let mut done = 0;
        while done < len {
            let n = (len - done).min(READ_CHUNK);
            self.fill(n)?;
            if failed.is_none() {
                sink.hasher.update(&self.buf[..n]);
                let _g = sink.writing.lock().unwrap_or_else(|p| p.into_inner());
                failed = part::write_at(sink.file, &self.buf[..n], sink.off + done as u64).err();
            }
            done += n;
        }
        Ok(match failed {
            None => Ok(sink.hasher.finish()),
            Some(e) => Err(e),
        })
    }

    /// Reads a payload of `len` bytes and drops it.
    pub fn skip(&mut self, mut len: usize) -> Result<()> {
        while len > 0 {
            let n = len.min(READ_CHUNK);
            self.fill(n)?;
            len -= n;
        }
        Ok(())
    }

    /// Reads a frame's prefix and JSON head: the head and its payload's length.
    fn read_head(&mut self) -> Result<(Map<String, Json>, usize)> {
        self.fill(PREFIX_LEN)?;
        let prefix = self.buf[..PREFIX_LEN].try_into().expect("PREFIX_LEN bytes");
        let (json_len, len) = parse_prefix(prefix)
            .map_err(|e| Error::Connection(format!("protocol error from the broker: {e}")))?;
        if json_len > MAX_JSON {
            return Err(Error::Connection(format!(
                "protocol error from the broker: a head of {json_len} bytes"
            )));
        }
        self.fill(json_len)?;
        let head = serde_json::from_slice(&self.buf[..json_len])
            .map_err(|e| Error::Connection(format!("invalid JSON from the broker: {e}")))?;
        Ok((head, len))
    }

    /// Reads exactly `n` bytes into the start of the buffer.
    fn fill(&mut self, n: usize) -> Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        if buf.len() < n {
            buf.resize(n, 0);
        }
        let r = self.read_full_into(&mut buf[..n]);
        self.buf = buf;
        r
    }

    /// Reads exactly `out.len()` bytes, keeping the broker's silence in check.
    fn read_full_into(&mut self, out: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < out.len() {
            match self.reader.read(&mut out[done..]) {
                Ok(0) => return Err(closed()),
                Ok(n) => {
                    done += n;
                    self.heard();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    self.quiet()?
                }
                Err(e) => return Err(lost(&e)),
            }
        }
        Ok(())
    }

    fn heard(&mut self) {
        self.last_heard = Instant::now();
        self.ping_out = false;
    }

    /// The socket was quiet for a while: pings the broker, or gives up on
    /// it when it has said nothing for [`MAXAGE`].
    fn quiet(&mut self) -> Result<()> {
        let quiet = self.last_heard.elapsed();
        if quiet >= MAXAGE {
            return Err(Error::Connection(format!(
                "the broker sent nothing for {:.1} s while a piece was awaited",
                quiet.as_secs_f64()
            )));
        }
        if quiet >= MAXAGE / 2 && !self.ping_out {
            self.ping_out = true;
            self.write(&json!({"command": "ping"}), &[])?;
        }
        Ok(())
    }

    fn write(&self, head: &Json, payload: &[u8]) -> Result<()> {
        Ok(write_frame(&self.writer, head, payload)?)
    }
}

fn lost(e: &io::Error) -> Error {
    Error::Connection(format!("connection to the broker lost: {e}"))
}

fn closed() -> Error {
    Error::Connection("the broker closed the connection".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::hash::piece_hash;
    use crate::files::wire::{bytes_value, encode_map, encode_with_data};
    use crate::wire::try_encode_head;
    use std::io::Write;
    use std::os::unix::net::UnixListener;
    use std::path::Path;

    /// A file of two 2 MiB pieces: each read in two rounds.
    const PIECE: u64 = 2 * READ_CHUNK as u64;
    const SIZE: u64 = 2 * PIECE;

    fn content() -> Vec<u8> {
        (0..SIZE).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn frame(head: Json, payload: &[u8]) -> Vec<u8> {
        let mut f = try_encode_head(head.to_string().as_bytes(), payload.len()).unwrap();
        f.extend_from_slice(payload);
        f
    }

    fn read_frame(s: &mut (impl Read + ?Sized)) -> (Json, Vec<u8>) {
        let mut p = [0u8; PREFIX_LEN];
        s.read_exact(&mut p).unwrap();
        let (j, n) = parse_prefix(&p).unwrap();
        let mut body = vec![0u8; j + n];
        s.read_exact(&mut body).unwrap();
        (
            serde_json::from_slice(&body[..j]).unwrap(),
            body[j..].to_vec(),
        )
    }

    /// A piece reply as the file server makes it: data first, then hash.
    fn piece_reply(data: &[u8], index: u64) -> Vec<u8> {
        let hash = piece_hash(data, SIZE, PIECE, index);
        encode_with_data(data.len(), |buf| {
            buf.extend_from_slice(data);
            Ok(vec![("hash", bytes_value(&hash))])
        })
        .unwrap()
        .to_vec()
    }

    /// Answers the handshake on `s`, then runs `script` on it.
    fn broker<S: Read + Write>(mut s: S, script: impl FnOnce(&mut S)) {
        let (hs, _) = read_frame(&mut s);
        assert_eq!(hs["command"], "handshake");
        assert_eq!(hs["broadcasts"], false);
        // A notice before the answer is passed over.
        s.write_all(&frame(json!({"meta": true}), b"")).unwrap();
        let ok = json!({"status": 0, "extensions": ["rpc"]});
        s.write_all(&frame(ok, b"")).unwrap();
        script(&mut s);
    }

    /// A fake broker on TCP or a unix socket, running `script` for its
    /// one client; its address.
    fn serve(
        unix: bool,
        dir: &Path,
        script: impl FnOnce(&mut dyn ReadWrite) + Send + 'static,
    ) -> (String, std::thread::JoinHandle<()>) {
        if unix {
            let path = dir.join("b.sock");
            let l = UnixListener::bind(&path).unwrap();
            let t = std::thread::spawn(move || {
                broker(l.accept().unwrap().0, |s| script(s));
            });
            (format!("unix:{}", path.display()), t)
        } else {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            let t = std::thread::spawn(move || {
                broker(l.accept().unwrap().0, |s| script(s));
            });
            (format!("tcp:127.0.0.1:{port}"), t)
        }
    }

    trait ReadWrite: Read + Write {}
    impl<T: Read + Write> ReadWrite for T {}

    /// A part file of `SIZE` bytes, opened as a download opens it.
    fn part(dir: &Path, writable: bool) -> File {
        let p = dir.join("part");
        File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap()
            .set_len(SIZE)
            .unwrap();
        File::options().read(true).write(writable).open(&p).unwrap()
    }

    /// Reads the reply to call `id` of piece `index` into `file`.
    fn take(link: &mut Link, file: &File, index: u64) -> Arrived {
        let Reply::Ok { id, len } = link.next_reply().unwrap() else {
            panic!("a failed reply")
        };
        assert_eq!(id, index + 1);
        piece_into(link, file, index, len).unwrap()
    }

    /// Reads a reply's payload of `len` bytes as piece `index` into `file`.
    fn piece_into(link: &mut Link, file: &File, index: u64, len: usize) -> Result<Arrived> {
        let writing = Mutex::new(());
        let mut sink = Sink {
            file,
            off: index * PIECE,
            writing: &writing,
            hasher: PieceHasher::new(SIZE, PIECE, index),
        };
        link.read_piece(len, PIECE, &mut sink)
    }

    /// Downloads both pieces over a fake broker and checks the file and
    /// hashes.
    fn both_pieces(unix: bool) {
        let dir = tempfile::tempdir().unwrap();
        let data = content();
        let sent = data.clone();
        let (addr, t) = serve(unix, dir.path(), move |s| {
            for index in 0..2u64 {
                let (call, args) = read_frame(s);
                assert_eq!(call["function"], "files.read");
                assert_eq!(call["id"], index + 1);
                assert!(!args.is_empty());
            }
            // A ping's answer between replies is passed over; the
            // second piece's reply comes first.
            s.write_all(&frame(json!({"status": 0}), b"")).unwrap();
            for index in [1u64, 0] {
                let d = &sent[(index * PIECE) as usize..((index + 1) * PIECE) as usize];
                let reply = piece_reply(d, index);
                s.write_all(&frame(json!({"result": index + 1, "status": 0}), &reply))
                    .unwrap();
            }
        });
        let mut link = Link::connect(&addr, "files", &ConnectOptions::default()).unwrap();
        let file = part(dir.path(), true);
        assert_eq!(link.request(b"\x22\0\0\0\0").unwrap(), 1);
        assert_eq!(link.request(b"\x22\0\0\0\0").unwrap(), 2);
        for index in [1u64, 0] {
            let a = take(&mut link, &file, index);
            let d = &data[(index * PIECE) as usize..((index + 1) * PIECE) as usize];
            assert_eq!(a.claimed, piece_hash(d, SIZE, PIECE, index));
            assert_eq!(a.stored.unwrap(), a.claimed);
        }
        t.join().unwrap();
        assert_eq!(std::fs::read(dir.path().join("part")).unwrap(), data);
    }

    #[test]
    fn pieces_are_written_into_the_part_over_tcp() {
        both_pieces(false);
    }

    #[test]
    fn pieces_are_written_into_the_part_over_a_unix_socket() {
        both_pieces(true);
    }

    #[test]
    fn a_reply_laid_out_otherwise_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let data = content();
        let d = data[..PIECE as usize].to_vec();
        let (addr, t) = serve(false, dir.path(), move |s| {
            read_frame(s);
            // The hash before the data: not the layout the link expects.
            let hash = piece_hash(&d, SIZE, PIECE, 0);
            let reply = encode_map(vec![
                ("hash", bytes_value(&hash)),
                ("data", bytes_value(&d)),
            ])
            .unwrap();
            s.write_all(&frame(json!({"result": 1, "status": 0}), &reply))
                .unwrap();
        });
        let mut link = Link::connect(&addr, "files", &ConnectOptions::default()).unwrap();
        let file = part(dir.path(), true);
        link.request(b"").unwrap();
        let a = take(&mut link, &file, 0);
        assert_eq!(a.stored.unwrap(), a.claimed);
        t.join().unwrap();
        let got = std::fs::read(dir.path().join("part")).unwrap();
        assert_eq!(got[..PIECE as usize], data[..PIECE as usize]);
    }

    #[test]
    fn a_piece_that_cannot_be_written_fails_alone_and_the_link_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let data = content();
        let sent = data.clone();
        let (addr, t) = serve(false, dir.path(), move |s| {
            for index in 0..2u64 {
                read_frame(s);
                let d = &sent[(index * PIECE) as usize..((index + 1) * PIECE) as usize];
                let reply = piece_reply(d, index);
                s.write_all(&frame(json!({"result": index + 1, "status": 0}), &reply))
                    .unwrap();
            }
        });
        let mut link = Link::connect(&addr, "files", &ConnectOptions::default()).unwrap();
        // Open read-only: every write into it fails.
        let read_only = part(dir.path(), false);
        link.request(b"").unwrap();
        link.request(b"").unwrap();
        let a = take(&mut link, &read_only, 0);
        assert!(a.stored.is_err());
        // The next reply on the link is read from its first byte.
        let file = part(dir.path(), true);
        let b = take(&mut link, &file, 1);
        assert_eq!(b.stored.unwrap(), b.claimed);
        t.join().unwrap();
        let got = std::fs::read(dir.path().join("part")).unwrap();
        assert_eq!(got[PIECE as usize..], data[PIECE as usize..]);
    }

    #[test]
    fn an_error_reply_is_the_calls_and_a_cut_reply_loses_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let data = content();
        let (addr, t) = serve(true, dir.path(), move |s| {
            read_frame(s);
            read_frame(s);
            let failed = json!({"result": 1, "status": -1, "remote": true,
                "error_type": "FileChangedError", "error": "'big' changed", "traceback": ""});
            s.write_all(&frame(failed, b"")).unwrap();
            // Half of the second reply, then the broker is gone.
            let reply = piece_reply(&data[..PIECE as usize], 0);
            let f = frame(json!({"result": 2, "status": 0}), &reply);
            s.write_all(&f[..f.len() / 2]).unwrap();
        });
        let mut link = Link::connect(&addr, "files", &ConnectOptions::default()).unwrap();
        link.request(b"").unwrap();
        link.request(b"").unwrap();
        match link.next_reply().unwrap() {
            Reply::Failed { id: 1, error } => {
                assert!(
                    matches!(error, Error::Changed(ref m) if m == "'big' changed"),
                    "{error:?}"
                );
            }
            _ => panic!("the failure should be call 1's"),
        }
        let file = part(dir.path(), true);
        let Reply::Ok { id: 2, len } = link.next_reply().unwrap() else {
            panic!("call 2's reply")
        };
        // The broker's half reply is more than a socket holds: it is gone
        // once the link has read it.
        let e = piece_into(&mut link, &file, 0, len).err().unwrap();
        assert!(e.is_fatal(), "{e:?}");
        assert!(e.to_string().contains("closed the connection"), "{e}");
        t.join().unwrap();
    }
}
