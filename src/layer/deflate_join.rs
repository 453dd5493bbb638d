//! Joining raw deflate streams that were compressed apart into one stream.
//!
//! libdeflate compresses a whole buffer at once and always ends it with a final block
//! (BFINAL = 1) that stops somewhere inside its last byte. To put such streams one after another
//! inside one gzip member, every stream but the last must have that bit cleared and end on a byte
//! boundary. Where the final block starts is not reported by libdeflate, so this module walks the
//! block headers and Huffman symbols (without producing output) to find it, clears BFINAL, and
//! appends an empty stored block, which is the same byte-aligning marker a zlib sync flush writes.
//!
//! The walk reads only our own compressor's output, but it still never panics or reads out of
//! bounds on a malformed stream: it returns an error.

/// Where a raw deflate stream's final block begins and where the stream ends, in bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StreamEnd {
    final_block_bit: u64,
    end_bit: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed deflate stream at bit {bit}: {what}")]
pub(crate) struct MalformedDeflate {
    what: &'static str,
    bit: u64,
}

/// Rewrites `stream` (one complete raw deflate stream) so that another raw deflate stream can
/// follow it: the final block becomes non-final and the stream ends byte-aligned after an empty
/// stored block. With `last`, the stream keeps its final block and is only trimmed to its end.
pub(crate) fn make_joinable(stream: &mut Vec<u8>, last: bool) -> Result<(), MalformedDeflate> {
    let end = find_end(stream)?;
    let end_byte = end.end_bit.div_ceil(8) as usize;
    stream.truncate(end_byte);
    // The bits after the end in the last byte are padding: make them zero, as the stored
    // block's header (three zero bits) and its alignment need.
    let used = (end.end_bit % 8) as u32;
    if used != 0 {
        let last_byte = stream.last_mut().expect("end_bit > 0, so a byte is there");
        *last_byte &= (1u8 << used) - 1;
    }
    if last {
        return Ok(());
    }
    let header = end.final_block_bit;
    stream[(header / 8) as usize] &= !(1u8 << (header % 8));
    // The empty stored block: BFINAL = 0 and BTYPE = 00 (three zero bits), zero bits up to the
    // byte boundary, then LEN = 0 and NLEN = 0xffff.
    if used == 0 || used > 5 {
        stream.push(0);
    }
    stream.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    Ok(())
}

fn find_end(stream: &[u8]) -> Result<StreamEnd, MalformedDeflate> {
    let mut bits = Bits::new(stream);
    let mut tables = Tables::default();
    loop {
        bits.refill()?;
        let block_start = bits.pos();
        let header = bits.take(3);
        match header >> 1 {
            0 => bits.skip_stored()?,
            1 => {
                if tables.fixed.is_none() {
                    tables.fixed = Some(fixed_tables());
                }
                let (litlen, dist) = tables.fixed.as_ref().expect("just built");
                walk_symbols(&mut bits, litlen, dist)?;
            }
            2 => {
                read_dynamic_tables(&mut bits, &mut tables)?;
                walk_symbols(&mut bits, &tables.litlen, &tables.dist)?;
            }
            _ => return Err(bits.error("reserved block type 3")),
        }
        if header & 1 == 1 {
            let end_bit = bits.pos();
            if end_bit > bits.len_bits() {
                return Err(bits.error("stream ends inside its final block"));
            }
            return Ok(StreamEnd {
                final_block_bit: block_start,
                end_bit,
            });
        }
    }
}

/// A reader of deflate's least-significant-bit-first bit order, holding up to 64 bits at a
/// time. Past the end it reads zeros, counted so that [`Bits::pos`] tells an overrun.
struct Bits<'a> {
    data: &'a [u8],
    /// The next byte to load; may pass `data.len()` by the zero bytes loaded past the end.
    next: usize,
    buffer: u64,
    held: u32,
}

/// After a refill at least this many bits are held: enough for a length code with its extra
/// bits and a distance code with its extra bits (15 + 5 + 15 + 13).
const REFILLED: u32 = 56;

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits {
            data,
            next: 0,
            buffer: 0,
            held: 0,
        }
    }

    fn pos(&self) -> u64 {
        self.next as u64 * 8 - u64::from(self.held)
    }

    fn len_bits(&self) -> u64 {
        self.data.len() as u64 * 8
    }

    fn error(&self, what: &'static str) -> MalformedDeflate {
        MalformedDeflate {
            what,
            bit: self.pos(),
        }
    }

    /// Makes at least [`REFILLED`] bits available.
    fn refill(&mut self) -> Result<(), MalformedDeflate> {
        if self.held >= REFILLED {
            return Ok(());
        }
        if let Some(bytes) = self.data.get(self.next..self.next + 8) {
            let word = u64::from_le_bytes(bytes.try_into().expect("eight bytes"));
            self.buffer |= word << self.held;
            self.next += ((63 - self.held) / 8) as usize;
            self.held |= REFILLED;
            return Ok(());
        }
        // Within eight bytes of the end, or past it: one byte at a time, zeros past the end.
        if self.pos() > self.len_bits() {
            return Err(self.error("stream ends inside a block"));
        }
        while self.held < REFILLED {
            let byte = self.data.get(self.next).copied().unwrap_or(0);
            self.buffer |= u64::from(byte) << self.held;
            self.next += 1;
            self.held += 8;
        }
        Ok(())
    }

    /// Takes `n` held bits (the caller has refilled enough) as a number.
    fn take(&mut self, n: u32) -> u32 {
        debug_assert!(n <= self.held && n <= 32);
        let value = (self.buffer & ((1u64 << n) - 1)) as u32;
        self.drop_bits(n);
        value
    }

    fn drop_bits(&mut self, n: u32) {
        self.buffer >>= n;
        self.held -= n;
    }

    fn skip_stored(&mut self) -> Result<(), MalformedDeflate> {
        // To the byte boundary, then LEN and NLEN.
        self.drop_bits(self.held % 8);
        let len = self.take(16);
        let nlen = self.take(16);
        if len != !nlen & 0xffff {
            return Err(self.error("stored block length does not match its complement"));
        }
        // The held bits are whole bytes now: give them back and skip in the data.
        let to = self.pos() + u64::from(len) * 8;
        if to > self.len_bits() {
            return Err(self.error("stream ends inside a stored block"));
        }
        self.next = (to / 8) as usize;
        self.buffer = 0;
        self.held = 0;
        Ok(())
    }

    /// Decodes one symbol of `table` and drops its code and its extra bits; needs a refill
    /// before.
    fn decode(&mut self, table: &Huffman) -> Result<u16, MalformedDeflate> {
        let entry = table.entries[(self.buffer as usize) & table.mask];
        if entry.skip == 0 {
            return Err(self.error("bit pattern that is no Huffman code"));
        }
        self.drop_bits(u32::from(entry.skip));
        Ok(entry.symbol)
    }
}

#[derive(Clone, Copy, Default)]
struct Entry {
    symbol: u16,
    /// The code's length plus the extra bits that follow this symbol; 0: no code.
    skip: u8,
}

/// A canonical Huffman code as a table indexed by the next input bits.
#[derive(Default)]
struct Huffman {
    mask: usize,
    entries: Vec<Entry>,
}

impl Huffman {
    /// Builds the table for `lengths` (0 = symbol unused); symbol `s` is followed by
    /// `extra[s]` extra bits, or none past the end of `extra`. Incomplete codes are allowed, as
    /// deflate allows them for a distance code with one symbol; unused patterns decode as errors.
    fn build(&mut self, lengths: &[u8], extra: &[u8]) -> Result<(), &'static str> {
        let mut count = [0u32; 16];
        for &len in lengths {
            count[usize::from(len)] += 1;
        }
        // Kraft's inequality: more codes than the lengths allow cannot be decoded.
        let mut room = 1i64;
        for &n in &count[1..] {
            room = room * 2 - i64::from(n);
            if room < 0 {
                return Err("over-subscribed Huffman code lengths");
            }
        }
        let mut next = [0u32; 16];
        let mut code = 0u32;
        for len in 1..16 {
            code = (code + if len > 1 { count[len - 1] } else { 0 }) << 1;
            next[len] = code;
        }
        let bits = u32::from(lengths.iter().copied().max().unwrap_or(0)).max(1);
        self.mask = (1 << bits) - 1;
        self.entries.clear();
        self.entries.resize(1 << bits, Entry::default());
        for (symbol, &len) in lengths.iter().enumerate() {
            if len == 0 {
                continue;
            }
            let code = next[usize::from(len)];
            next[usize::from(len)] += 1;
            // The input holds Huffman codes most-significant bit first.
            let reversed = code.reverse_bits() >> (32 - u32::from(len));
            let entry = Entry {
                symbol: symbol as u16,
                skip: len + extra.get(symbol).copied().unwrap_or(0),
            };
            let mut index = reversed as usize;
            while index < self.entries.len() {
                self.entries[index] = entry;
                index += 1 << len;
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Tables {
    litlen: Huffman,
    dist: Huffman,
    code_lengths: Huffman,
    fixed: Option<(Huffman, Huffman)>,
}

fn fixed_tables() -> (Huffman, Huffman) {
    let mut lengths = [0u8; 288];
    lengths[..144].fill(8);
    lengths[144..256].fill(9);
    lengths[256..280].fill(7);
    lengths[280..].fill(8);
    let mut litlen = Huffman::default();
    let mut dist = Huffman::default();
    litlen
        .build(&lengths, &LITLEN_EXTRA)
        .expect("the fixed code is complete");
    dist.build(&[5; 30], &DISTANCE_EXTRA)
        .expect("the fixed code is valid");
    (litlen, dist)
}

const CODE_LENGTH_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

fn read_dynamic_tables(bits: &mut Bits, tables: &mut Tables) -> Result<(), MalformedDeflate> {
    let litlen_count = bits.take(5) as usize + 257;
    let dist_count = bits.take(5) as usize + 1;
    let code_length_count = bits.take(4) as usize + 4;
    if litlen_count > 286 || dist_count > 30 {
        return Err(bits.error("too many literal/length or distance codes"));
    }
    let mut code_length_lengths = [0u8; 19];
    for &symbol in &CODE_LENGTH_ORDER[..code_length_count] {
        bits.refill()?;
        code_length_lengths[symbol] = bits.take(3) as u8;
    }
    let at = bits.pos();
    let malformed = |what| MalformedDeflate { what, bit: at };
    tables
        .code_lengths
        .build(&code_length_lengths, &[])
        .map_err(malformed)?;
    let mut lengths = [0u8; 286 + 30];
    let total = litlen_count + dist_count;
    let mut filled = 0;
    while filled < total {
        bits.refill()?;
        let symbol = bits.decode(&tables.code_lengths)?;
        let (value, repeat) = match symbol {
            0..=15 => (symbol as u8, 1),
            16 => {
                let previous = filled
                    .checked_sub(1)
                    .ok_or_else(|| bits.error("length repeat with no length before it"))?;
                (lengths[previous], 3 + bits.take(2) as usize)
            }
            17 => (0, 3 + bits.take(3) as usize),
            _ => (0, 11 + bits.take(7) as usize),
        };
        if filled + repeat > total {
            return Err(bits.error("code lengths run past the codes"));
        }
        lengths[filled..filled + repeat].fill(value);
        filled += repeat;
    }
    if lengths[256] == 0 {
        return Err(bits.error("block without an end-of-block code"));
    }
    let at = bits.pos();
    let malformed = |what| MalformedDeflate { what, bit: at };
    tables
        .litlen
        .build(&lengths[..litlen_count], &LITLEN_EXTRA)
        .map_err(malformed)?;
    tables
        .dist
        .build(&lengths[litlen_count..total], &DISTANCE_EXTRA)
        .map_err(malformed)
}

/// Extra bits after literal/length symbols 0..=285 (only lengths have them) and distance
/// symbols 0..=29 (RFC 1951, 3.2.5).
const LITLEN_EXTRA: [u8; 286] = {
    let lengths: [u8; 29] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ];
    let mut all = [0u8; 286];
    let mut i = 0;
    while i < 29 {
        all[257 + i] = lengths[i];
        i += 1;
    }
    all
};
const DISTANCE_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

fn walk_symbols(bits: &mut Bits, litlen: &Huffman, dist: &Huffman) -> Result<(), MalformedDeflate> {
    loop {
        bits.refill()?;
        match bits.decode(litlen)? {
            0..=255 => {}
            256 => return Ok(()),
            257..=285 => {
                if bits.decode(dist)? >= 30 {
                    return Err(bits.error("distance symbol 30 or 31"));
                }
            }
            _ => return Err(bits.error("length symbol 286 or 287")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn deflate(data: &[u8], level: i32) -> Vec<u8> {
        let mut compressor =
            libdeflater::Compressor::new(libdeflater::CompressionLvl::new(level).unwrap());
        let mut out = vec![0; compressor.deflate_compress_bound(data.len())];
        let n = compressor.deflate_compress(data, &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn inflate(stream: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(stream)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn pieces() -> Vec<Vec<u8>> {
        let mut state = 0x9e37_79b9_u32;
        let mut noise = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        let text: Vec<u8> = (0..200_000)
            .map(|i| b"lorem ipsum dolor sit amet "[i % 27] ^ (noise() % 7 == 0) as u8)
            .collect();
        // Random bytes make libdeflate choose stored blocks, a few bytes a fixed-code block,
        // text dynamic blocks.
        let random: Vec<u8> = (0..70_000).map(|_| noise() as u8).collect();
        vec![
            text,
            random,
            b"tiny".to_vec(),
            Vec::new(),
            vec![0; 300_000],
            (0..=255u8).cycle().take(100_000).collect(),
        ]
    }

    #[test]
    fn joined_streams_inflate_to_the_joined_inputs() {
        for level in [1, 6, 12] {
            let inputs = pieces();
            let mut joined = Vec::new();
            for (i, input) in inputs.iter().enumerate() {
                let mut stream = deflate(input, level);
                make_joinable(&mut stream, i + 1 == inputs.len()).unwrap();
                joined.extend_from_slice(&stream);
            }
            assert_eq!(inflate(&joined), inputs.concat(), "level {level}");
        }
    }

    #[test]
    fn the_end_found_is_where_inflate_stops() {
        for input in pieces() {
            let stream = deflate(&input, 6);
            let end = find_end(&stream).unwrap();
            // libdeflate writes no bytes after the stream, so its end is inside the last byte.
            assert_eq!(end.end_bit.div_ceil(8), stream.len() as u64);
            assert!(end.final_block_bit < end.end_bit);
        }
    }

    #[test]
    fn malformed_streams_are_errors_not_panics() {
        let good = deflate(&pieces()[0], 6);
        for cut in [0, 1, 2, 10, good.len() / 2, good.len() - 1] {
            assert!(find_end(&good[..cut]).is_err(), "cut at {cut}");
        }
        // Block type 3 is reserved.
        assert!(find_end(&[0b111]).is_err());
        // A stored block whose length and complement disagree.
        assert!(find_end(&[0b001, 5, 0, 5, 0]).is_err());
        let mut state = 1u32;
        for _ in 0..2000 {
            let junk: Vec<u8> = (0..64)
                .map(|_| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (state >> 16) as u8
                })
                .collect();
            let _ = find_end(&junk);
        }
    }
}
