//! A validating index of compact JSON, 64 bytes at a time: the fast path of
//! [`super::parse_with`] (issue 15).
//!
//! [`Index::build`] checks that the text is one JSON object and records where each value
//! starts and where each object or array ends, so that [`super::scan_de`] can read the
//! fields the webhook needs and jump over the rest (a 20 KB pod in one step) without
//! scanning them again. The checks are bitwise over 64-byte blocks (simdjson's stage 1,
//! in safe Rust with `wide`'s SSE2 vectors), and the grammar is checked with masks too:
//! which byte may follow which, which strings are keys, in which container each byte is.
//! Only the containers, scalars (numbers, `true`, …) and escapes, all rare in a review,
//! are handled one by one.
//!
//! It accepts less than JSON, never more: whitespace between tokens (the API server
//! sends none), nesting deeper than [`MAX_DEPTH`] and `\u` escapes of surrogates make it
//! decline (`None`), and the caller then parses the body the ordinary way. Everything it
//! accepts, serde_json accepts too (the differential fuzz target `one_pass` checks it).

use std::cell::RefCell;

use wide::u8x16;

/// Deeper nesting is left to serde_json (whose own limit is 128).
pub(super) const MAX_DEPTH: usize = 62;

/// Entries a thread keeps between reviews (8 bytes each); a larger index is freed.
const KEEP_ENTRIES: usize = 1 << 16;

thread_local! {
    /// Reused from review to review: indexing allocates nothing once it has grown.
    static INDEX: RefCell<Index> = RefCell::new(Index::default());
}

/// Runs `read` on the index of `text`, built in this thread's reused buffers; `None`
/// when the text cannot be indexed (see the module doc).
pub(super) fn with_index<T>(text: &str, read: impl FnOnce(&Index) -> T) -> Option<T> {
    INDEX.with(|cell| {
        let mut fresh = Index::default();
        let mut kept = cell.try_borrow_mut();
        let index = match kept.as_deref_mut() {
            Ok(index) => index,
            Err(_) => &mut fresh,
        };
        let result = index.build(text).map(|()| read(index));
        if index.entries.capacity() > KEEP_ENTRIES {
            *index = Index::default();
        }
        result
    })
}

/// Where the values of a validated text are.
#[derive(Default)]
pub(super) struct Index {
    /// One per value start (string, scalar, `{`, `[`) and per `}`/`]`, in text order:
    /// the byte position, and for `{`/`[` the entry of the matching close (high half).
    pub entries: Vec<u64>,
    /// Byte positions of the backslashes that start escapes, in order.
    pub escapes: Vec<u32>,
    stack: Vec<u32>,
}

/// The bit masks of one 64-byte block.
#[derive(Clone, Copy, Default)]
struct Masks {
    colon: u64,
    comma: u64,
    open: u64,
    close: u64,
    close_q: u64,
    key_close: u64,
    scalar: u64,
}

/// The classes of bytes of a block, one bit per byte: `"`, `\\`, ≤ 0x20 (controls and
/// space), `{` or `[`, `}` or `]`, `:`, `,`.
#[inline(always)]
fn classes(block: &[u8; 64]) -> [u64; 7] {
    let mut out = [0u64; 7];
    for (k, chunk) in block.chunks_exact(16).enumerate() {
        let mut lane = [0u8; 16];
        lane.copy_from_slice(chunk);
        let v = u8x16::from(lane);
        // `{` 0x7b and `[` 0x5b, `}` 0x7d and `]` 0x5d differ only in bit 0x20.
        let folded = v | u8x16::splat(0x20);
        let bits = |m: u8x16| u64::from(m.to_bitmask()) << (16 * k);
        out[0] |= bits(v.simd_eq(u8x16::splat(b'"')));
        out[1] |= bits(v.simd_eq(u8x16::splat(b'\\')));
        out[2] |= bits(v.simd_lt(u8x16::splat(0x21)));
        out[3] |= bits(folded.simd_eq(u8x16::splat(b'{')));
        out[4] |= bits(folded.simd_eq(u8x16::splat(b'}')));
        out[5] |= bits(v.simd_eq(u8x16::splat(b':')));
        out[6] |= bits(v.simd_eq(u8x16::splat(b',')));
    }
    out
}

/// Bits set from each set bit of `x` up to (not including) the next one.
#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        x ^= x << shift;
    }
    x
}

/// `x` moved one byte later, the previous block's last byte entering at bit 0.
#[inline(always)]
fn after(x: u64, before: u64) -> u64 {
    x << 1 | before >> 63
}

/// Bits `from..=to` of a block.
#[inline(always)]
fn span(from: u32, to: u32) -> u64 {
    (u64::MAX >> (63 - to)) & (u64::MAX << from)
}

/// What one block leaves to the next.
#[derive(Default)]
struct Carry {
    prev: Masks,
    /// All ones when the previous block ended inside a string.
    in_string: u64,
    /// 1 when the previous block's last byte starts an escape.
    escape: u64,
    /// 1 when a key string runs on into this block.
    key: u64,
    /// Per depth, 1 when the container open there is an object (bit 0: the top level,
    /// not a container, counts as an array).
    kinds: u64,
}

impl Index {
    /// Validates `text` (the body, already checked as UTF-8, without surrounding
    /// whitespace) as a compact JSON object and indexes it; `None` when it cannot.
    pub fn build(&mut self, text: &str) -> Option<()> {
        let bytes = text.as_bytes();
        u32::try_from(bytes.len()).ok()?;
        if bytes.first() != Some(&b'{') || bytes.last() != Some(&b'}') {
            return None;
        }
        self.entries.clear();
        self.escapes.clear();
        self.stack.clear();
        let mut carry = Carry::default();
        let mut blocks = bytes.chunks_exact(64);
        let mut base = 0;
        for block in blocks.by_ref() {
            let block = block.try_into().ok()?;
            self.block(bytes, base, block, u64::MAX, &mut carry)?;
            base += 64;
        }
        let rest = blocks.remainder();
        if !rest.is_empty() {
            let mut block = [b' '; 64];
            block[..rest.len()].copy_from_slice(rest);
            self.block(
                bytes,
                base,
                &block,
                u64::MAX >> (64 - rest.len()),
                &mut carry,
            )?;
        }
        (carry.in_string == 0 && carry.escape == 0 && self.stack.is_empty()).then_some(())
    }

    /// Checks and indexes the block at `base`; `valid` marks its bytes of the text.
    #[inline(always)]
    fn block(
        &mut self,
        bytes: &[u8],
        base: usize,
        block: &[u8; 64],
        valid: u64,
        carry: &mut Carry,
    ) -> Option<()> {
        let [quote, backslash, blank, open, close, colon, comma] = classes(block);
        let prev = carry.prev;
        let escaped = if backslash | carry.escape == 0 {
            0
        } else {
            self.escapes(bytes, base, backslash, &mut carry.escape)?
        };
        let unescaped = quote & !escaped;
        let strings = prefix_xor(unescaped) ^ carry.in_string;
        carry.in_string = 0u64.wrapping_sub(strings >> 63);
        let (open_q, close_q) = (unescaped & strings, unescaped & !strings);
        // Brackets, colons and commas in strings are text.
        let (open, close) = (open & !strings, close & !strings);
        let (colon, comma) = (colon & !strings, comma & !strings);
        if blank & !strings & valid != 0 {
            return None; // whitespace between tokens, or a control character
        }
        let mut in_string = blank & strings;
        while in_string != 0 {
            if bytes[base + in_string.trailing_zeros() as usize] < 0x20 {
                return None; // a control character in a string
            }
            in_string &= in_string - 1;
        }
        let scalar = !(strings | quote | open | close | colon | comma) & valid;
        let scalar_start = scalar & !after(scalar, prev.scalar);
        let starts = (open_q | scalar_start | open | close) & valid;
        let first_entry = self.entries.len();
        let mut left = starts;
        while left != 0 {
            self.entries
                .push((base + left.trailing_zeros() as usize) as u64);
            left &= left - 1;
        }
        let mut scalars = scalar_start;
        while scalars != 0 {
            scalar_ok(bytes, base + scalars.trailing_zeros() as usize)?;
            scalars &= scalars - 1;
        }
        // Brackets, and which bytes are inside an object.
        let mut objects = 0u64;
        let mut segment = 0u32;
        let mut brackets = (open | close) & valid;
        while brackets != 0 {
            let bit = brackets.trailing_zeros();
            brackets &= brackets - 1;
            let at = base + bit as usize;
            let entry = first_entry + (starts & !(u64::MAX << bit)).count_ones() as usize;
            let depth = self.stack.len();
            if carry.kinds >> depth & 1 == 1 {
                objects |= span(segment, bit);
            }
            segment = bit + 1;
            if open >> bit & 1 == 1 {
                if depth >= MAX_DEPTH || (depth == 0 && at != 0) {
                    return None;
                }
                self.stack.push(u32::try_from(entry).ok()?);
                let object = u64::from(bytes[at] == b'{');
                carry.kinds = carry.kinds & !(2 << depth) | object << (depth + 1);
            } else {
                let opened = self.stack.pop()? as usize;
                let object = carry.kinds >> depth & 1 == 1;
                if object != (bytes[at] == b'}') || (depth == 1 && at != bytes.len() - 1) {
                    return None;
                }
                self.entries[opened] |= (entry as u64) << 32;
            }
        }
        if segment < 64 && carry.kinds >> self.stack.len() & 1 == 1 {
            objects |= u64::MAX << segment;
        }
        // Keys: strings that start right after `{` or `,` inside an object.
        let keys = open_q & after(open | comma, prev.open | prev.comma) & objects;
        let (sum, c1) = strings.overflowing_add(keys);
        let (sum, c2) = sum.overflowing_add(carry.key);
        carry.key = u64::from(c1 | c2);
        let key_close = (sum ^ strings) & close_q;
        let value_start = open_q | scalar_start | open;
        let value_end = after(close_q, prev.close_q)
            | after(scalar, prev.scalar) & !scalar
            | after(close, prev.close);
        let after_open = after(open, prev.open);
        let first = u64::from(base == 0);
        let bad = value_end & !(colon | comma | close)
            | value_start
                & !(after(open | comma | colon, prev.open | prev.comma | prev.colon) | first)
            | after(colon | comma, prev.colon | prev.comma) & !value_start
            | after_open & !(value_start | close)
            | (colon ^ after(key_close, prev.key_close))
            | after(comma, prev.comma) & objects & !open_q
            | after_open & objects & !(open_q | close)
            | value_start & objects & !keys & !after(colon, prev.colon)
            | comma & !value_end
            | close & !(value_end | after_open);
        if bad & valid != 0 {
            return None;
        }
        carry.prev = Masks {
            colon,
            comma,
            open,
            close,
            close_q,
            key_close,
            scalar,
        };
        Some(())
    }

    /// The escaped bytes of a block; checks and records each escape.
    fn escapes(
        &mut self,
        bytes: &[u8],
        base: usize,
        backslash: u64,
        carry: &mut u64,
    ) -> Option<u64> {
        let mut escaped = *carry;
        *carry = 0;
        let mut left = backslash & !escaped;
        while left != 0 {
            let bit = left.trailing_zeros();
            let at = base + bit as usize;
            escape_ok(bytes, at)?;
            self.escapes.push(u32::try_from(at).ok()?);
            if bit == 63 {
                *carry = 1;
            } else {
                escaped |= 2 << bit;
            }
            left &= !(1 << bit) & !escaped;
        }
        Some(escaped)
    }
}

/// The escape at `at` (a backslash) is one serde_json reads the same whether it keeps
/// the string or skips it: not a `\u` surrogate, which it only checks when keeping.
fn escape_ok(bytes: &[u8], at: usize) -> Option<()> {
    match bytes.get(at + 1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(()),
        b'u' => {
            let hex = std::str::from_utf8(bytes.get(at + 2..at + 6)?).ok()?;
            let code = u16::from_str_radix(hex, 16).ok()?;
            (hex.bytes().all(|b| b.is_ascii_hexdigit()) && !(0xd800..0xe000).contains(&code))
                .then_some(())
        }
        _ => None,
    }
}

/// The number or literal starting at `at` is valid JSON.
fn scalar_ok(bytes: &[u8], at: usize) -> Option<()> {
    let end = bytes[at..]
        .iter()
        .position(|b| matches!(b, b',' | b'}' | b']' | b':' | b'{' | b'[' | b'"') || *b <= b' ')
        .map_or(bytes.len(), |n| at + n);
    let token = &bytes[at..end];
    if matches!(token, b"true" | b"false" | b"null") {
        return Some(());
    }
    // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();
    let mut rest = token.strip_prefix(b"-").unwrap_or(token);
    let n = digits(rest);
    if n == 0 || (n > 1 && rest[0] == b'0') {
        return None;
    }
    rest = &rest[n..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = digits(fraction);
        (n > 0).then_some(())?;
        rest = &fraction[n..];
    }
    if let Some(exponent) = rest.strip_prefix(b"e").or_else(|| rest.strip_prefix(b"E")) {
        let exponent = exponent
            .strip_prefix(b"+")
            .or_else(|| exponent.strip_prefix(b"-"))
            .unwrap_or(exponent);
        let n = digits(exponent);
        (n > 0).then_some(())?;
        rest = &exponent[n..];
    }
    rest.is_empty().then_some(())
}
