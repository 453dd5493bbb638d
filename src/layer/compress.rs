//! Layer compression: gzip (default) and zstd, both reproducible and both using every core.
//!
//! gzip: the input is cut into fixed 1 MiB chunks, each chunk is deflated on its own (no
//! dictionary) by libdeflate on a worker thread, and the chunks' raw deflate streams are joined
//! into one gzip member (see `deflate_join.rs`) whose CRC is combined from the chunks' CRCs.
//! One member, like pigz writes, because some readers stop after the first member of a
//! multi-member file (Python's `tarfile` in stream mode, flate2's `GzDecoder`). The bytes depend
//! only on the input, the chunk size and the level, never on the number of threads. The header
//! has no timestamp, no name and OS byte 255 ("unknown").
//!
//! Compressed bytes change with the compressor's code, so the versions are pinned in Cargo.toml
//! and named in [`Compression::cache_tag`]; a test pins the digest of a known input.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
}

pub const GZIP_LEVEL: u32 = 5;
pub const ZSTD_LEVEL: i32 = 3;
/// Chunks have no dictionary, so small ones cost ratio: on the layer bench's tree, 128 KiB chunks
/// give 1.5% more bytes than 1 MiB ones, 256 KiB ones 0.7%.
const CHUNK: usize = 1024 * 1024;

impl Compression {
    /// Everything that decides the compressed bytes; part of every layer cache key.
    pub fn cache_tag(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip/libdeflate-1.26.1/level-5/chunk-1m",
            Compression::Zstd => "zstd/1.5.7/level-3/mt",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    pub fn encoder<W: Write>(self, out: W, threads: usize) -> io::Result<Encoder<W>> {
        Ok(match self {
            Compression::Gzip => Encoder::Gzip(Box::new(ParallelGzip::new(out, threads)?)),
            Compression::Zstd => {
                let mut encoder = zstd::Encoder::new(out, ZSTD_LEVEL)?;
                // zstd's multi-threaded format is the same for any worker count >= 1, so the
                // digest does not depend on the machine's cores.
                encoder.multithread(threads.max(1) as u32)?;
                encoder.include_checksum(false)?;
                Encoder::Zstd(encoder)
            }
        })
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!(
                "unknown compression `{other}` (expected gzip or zstd)"
            )),
        }
    }
}

/// Reads a layer blob back as its tar stream.
pub fn decoder<'a>(
    compression: Option<Compression>,
    reader: Box<dyn std::io::Read + 'a>,
) -> io::Result<Box<dyn std::io::Read + 'a>> {
    Ok(match compression {
        Some(Compression::Gzip) => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Some(Compression::Zstd) => Box::new(zstd::Decoder::new(reader)?),
        None => reader,
    })
}

pub enum Encoder<W: Write> {
    Gzip(Box<ParallelGzip<W>>),
    Zstd(zstd::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(gz) => gz.finish(),
            Encoder::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(gz) => gz.write(buf),
            Encoder::Zstd(z) => z.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(gz) => gz.flush(),
            Encoder::Zstd(z) => z.flush(),
        }
    }
}

struct Job {
    seq: u64,
    data: Vec<u8>,
    last: bool,
}

struct Done {
    seq: u64,
    compressed: io::Result<Vec<u8>>,
    crc: crc32fast::Hasher,
}

struct Pool {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
}

/// A parallel gzip writer; see the module docs.
pub struct ParallelGzip<W: Write> {
    out: W,
    chunk: Vec<u8>,
    crc: crc32fast::Hasher,
    total_in: u64,
    next_seq: u64,
    next_to_write: u64,
    ready: BTreeMap<u64, (Vec<u8>, crc32fast::Hasher)>,
    in_flight: usize,
    max_in_flight: usize,
    /// Compresses on the calling thread when there is no pool.
    local: Option<ChunkCompressor>,
    pool: Option<Pool>,
}

impl<W: Write> ParallelGzip<W> {
    pub fn new(mut out: W, threads: usize) -> io::Result<Self> {
        // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=255
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
        let pool = (threads > 1).then(|| spawn_pool(threads));
        let local = pool.is_none().then(ChunkCompressor::new);
        Ok(ParallelGzip {
            out,
            chunk: Vec::with_capacity(CHUNK),
            crc: crc32fast::Hasher::new(),
            total_in: 0,
            next_seq: 0,
            next_to_write: 0,
            ready: BTreeMap::new(),
            in_flight: 0,
            // Enough to keep every worker busy while the writer waits for the oldest chunk; each
            // holds a chunk and its output, so memory stays a few MiB per thread.
            max_in_flight: threads + 2,
            local,
            pool,
        })
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        let job = Job {
            seq: self.next_seq,
            data,
            last,
        };
        self.next_seq += 1;
        if let Some(local) = &mut self.local {
            let done = local.run(job);
            return self.accept(done);
        }
        let pool = self
            .pool
            .as_ref()
            .expect("a pool when not compressing locally");
        pool.jobs
            .as_ref()
            .expect("pool is open until finish")
            .send(job)
            .map_err(|_| io::Error::other("gzip worker stopped"))?;
        self.in_flight += 1;
        while self.in_flight >= self.max_in_flight {
            self.receive_one()?;
        }
        Ok(())
    }

    fn receive_one(&mut self) -> io::Result<()> {
        let done = self
            .pool
            .as_ref()
            .expect("only called with a pool")
            .done
            .recv()
            .map_err(|_| io::Error::other("gzip worker stopped"))?;
        self.in_flight -= 1;
        self.accept(done)
    }

    /// Writes finished chunks in sequence order; later ones wait until their turn.
    fn accept(&mut self, done: Done) -> io::Result<()> {
        self.ready.insert(done.seq, (done.compressed?, done.crc));
        while let Some((bytes, crc)) = self.ready.remove(&self.next_to_write) {
            self.out.write_all(&bytes)?;
            self.crc.combine(&crc);
            self.next_to_write += 1;
        }
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while self.in_flight > 0 {
            self.receive_one()?;
        }
        if let Some(mut pool) = self.pool.take() {
            drop(pool.jobs.take());
            for worker in pool.workers.drain(..) {
                let _ = worker.join();
            }
        }
        let crc = self.crc.clone().finalize();
        let len = self.total_in as u32; // ISIZE is the length modulo 2^32
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.chunk.len();
        let n = room.min(buf.len());
        self.chunk.extend_from_slice(&buf[..n]);
        self.total_in += n as u64;
        if self.chunk.len() == CHUNK {
            self.submit(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn spawn_pool(threads: usize) -> Pool {
    let (job_tx, job_rx) = channel::<Job>();
    let (done_tx, done_rx) = channel::<Done>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let workers = (0..threads)
        .map(|_| {
            let jobs = Arc::clone(&job_rx);
            let done = done_tx.clone();
            std::thread::spawn(move || {
                let mut compressor = ChunkCompressor::new();
                loop {
                    let job = match jobs.lock().map(|rx| rx.recv()) {
                        Ok(Ok(job)) => job,
                        _ => return,
                    };
                    // A panic here would lose the chunk and leave `finish` waiting for it.
                    let seq = job.seq;
                    let finished =
                        crate::workers::catch(|| compressor.run(job)).unwrap_or_else(|e| Done {
                            seq,
                            compressed: Err(io::Error::other(e)),
                            crc: crc32fast::Hasher::new(),
                        });
                    if done.send(finished).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    Pool {
        jobs: Some(job_tx),
        done: done_rx,
        workers,
    }
}

/// One thread's libdeflate compressor. libdeflate compresses each buffer on its own, keeping no
/// state from the buffers before, so reusing it does not make the bytes depend on which chunks a
/// worker happened to take.
struct ChunkCompressor {
    deflate: libdeflater::Compressor,
}

impl ChunkCompressor {
    fn new() -> Self {
        let level = libdeflater::CompressionLvl::new(GZIP_LEVEL as i32)
            .expect("GZIP_LEVEL is one of libdeflate's levels");
        ChunkCompressor {
            deflate: libdeflater::Compressor::new(level),
        }
    }

    fn run(&mut self, job: Job) -> Done {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&job.data);
        Done {
            seq: job.seq,
            compressed: self.deflate_chunk(&job.data, job.last),
            crc,
        }
    }

    /// Raw deflate of one chunk, made joinable with the next one unless it is the last.
    fn deflate_chunk(&mut self, data: &[u8], last: bool) -> io::Result<Vec<u8>> {
        let mut out = vec![0; self.deflate.deflate_compress_bound(data.len())];
        let len = self
            .deflate
            .deflate_compress(data, &mut out)
            .map_err(io::Error::other)?;
        out.truncate(len);
        super::deflate_join::make_joinable(&mut out, last).map_err(io::Error::other)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::digest::Digest;

    /// Text-like input with repeats across chunk boundaries, so dictionaries matter.
    fn sample(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_u32;
        (0..len)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                if i % 3 == 0 {
                    b"abcdefgh"[(state % 8) as usize]
                } else {
                    b"the quick brown fox "[i % 20]
                }
            })
            .collect()
    }

    fn compress(c: Compression, input: &[u8], threads: usize) -> Vec<u8> {
        let mut enc = c.encoder(Vec::new(), threads).unwrap();
        // Odd write sizes, as the tar writer makes them.
        for piece in input.chunks(7777) {
            enc.write_all(piece).unwrap();
        }
        enc.finish().unwrap()
    }

    #[test]
    fn gzip_round_trips_and_does_not_depend_on_threads() {
        // Enough chunks that workers take them in differing orders from run to run.
        let input = sample(CHUNK * 12 + 1234);
        let one = compress(Compression::Gzip, &input, 1);
        for threads in [2, 3, 8] {
            assert_eq!(
                one,
                compress(Compression::Gzip, &input, threads),
                "{threads} threads"
            );
        }
        // One gzip member: `GzDecoder` stops after the first member, yet reads everything.
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&one[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, input);
        assert!(one.len() < input.len() / 2);
        // The header has no timestamp and says "unknown OS".
        assert_eq!(&one[4..8], &[0, 0, 0, 0]);
        assert_eq!(one[9], 255);
    }

    #[test]
    fn gzip_of_empty_input_is_valid() {
        let out = compress(Compression::Gzip, b"", 2);
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert!(decoded.is_empty());
    }

    #[test]
    fn zstd_round_trips_and_does_not_depend_on_threads() {
        let input = sample(1024 * 1024 + 99);
        let one = compress(Compression::Zstd, &input, 1);
        let two = compress(Compression::Zstd, &input, 2);
        assert_eq!(one, two);
        assert_eq!(zstd::decode_all(&one[..]).unwrap(), input);
    }

    /// Digests must not move with a crate update: if this fails, the compressor changed, and
    /// `cache_tag` and the pinned versions in Cargo.toml must change with it.
    #[test]
    fn compressed_bytes_are_pinned() {
        // Three chunks and a tail, so the joins between chunks are pinned too.
        let input = sample(CHUNK * 3 + 99);
        assert_eq!(
            Digest::of_bytes(&compress(Compression::Gzip, &input, 2)).to_string(),
            PINNED_GZIP
        );
        // The input zstd's digest was pinned with (three 128 KiB gzip chunks of old and a tail).
        let input = sample(128 * 1024 * 3 + 99);
        assert_eq!(
            Digest::of_bytes(&compress(Compression::Zstd, &input, 2)).to_string(),
            PINNED_ZSTD
        );
    }

    const PINNED_GZIP: &str =
        "sha256:7d7720d9eac69c1111b225a726e925c0804220bd0cd2c218259df136bce3499e";
    const PINNED_ZSTD: &str =
        "sha256:2f66fbc7d4c8d28d776b9e9cd253a51a08f5d1314eb4c2b8dffac0034d9ede51";
}
