//! A serde `Deserializer` over a text validated and indexed by [`super::scan::Index`]:
//! the review's visitors (`one_pass.rs`) and the pod view read through it as through
//! serde_json, but a value nobody reads (the pod of a review that is skipped, a
//! container's `image`, …) is passed over in one step, and a string is borrowed without
//! being scanned again.
//!
//! It reads objects, arrays and strings without escapes itself; numbers, literals and
//! strings with escapes (all rare in a review) are handed to serde_json, token by token,
//! so every visitor sees exactly the calls serde_json would make, with its numbers and
//! errors. The error type is serde_json's; the caller treats any error as "parse this
//! body the ordinary way", which words it.

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Error;
use serde_json::de::StrRead;

use super::scan::Index;

/// serde_json's private name for `RawValue` (serde_json/src/raw.rs): a `&RawValue` asks
/// for it with `deserialize_newtype_struct` and reads one map entry, that name → the
/// value's text.
const RAW_VALUE: &str = "$serde_json::private::RawValue";

/// The text and where its values are, read from entry `at` on.
pub(super) struct Doc<'a, 'de> {
    text: &'de str,
    entries: &'a [u64],
    escapes: &'a [u32],
    at: usize,
    /// The first escape not before the current value (values are read in order).
    escape: usize,
}

/// Reads the whole of `text` (indexed in `index`) with `seed`.
pub(super) fn read<'de, S: DeserializeSeed<'de>>(
    text: &'de str,
    index: &Index,
    seed: S,
) -> Result<S::Value, Error> {
    let mut doc = Doc {
        text,
        entries: &index.entries,
        escapes: &index.escapes,
        at: 0,
        escape: 0,
    };
    let value = seed.deserialize(&mut doc)?;
    if doc.at != doc.entries.len() {
        return Err(de::Error::custom("trailing values"));
    }
    Ok(value)
}

fn missing() -> Error {
    de::Error::custom("the index ends early")
}

impl<'de> Doc<'_, 'de> {
    fn position(&self, entry: usize) -> Result<usize, Error> {
        match self.entries.get(entry) {
            Some(e) => Ok(*e as u32 as usize),
            None => Err(missing()),
        }
    }

    /// The first byte of the current value.
    fn peek(&self) -> Result<u8, Error> {
        let at = self.position(self.at)?;
        Ok(self.text.as_bytes()[at])
    }

    /// Where the current value starts and ends, and the entry after it.
    fn bounds(&self) -> Result<(usize, usize, usize), Error> {
        let start = self.position(self.at)?;
        let bytes = self.text.as_bytes();
        Ok(match bytes[start] {
            b'{' | b'[' => {
                let close = (self.entries[self.at] >> 32) as usize;
                (start, self.position(close)? + 1, close + 1)
            }
            _ => {
                // The next value or close follows at once, or after a `,` or `:`.
                let next = self.position(self.at + 1)?;
                let end = next - usize::from(matches!(bytes[next - 1], b',' | b':'));
                (start, end, self.at + 1)
            }
        })
    }

    /// The current value's text, and the entry after it.
    fn value(&self) -> Result<(&'de str, usize), Error> {
        let (start, end, next) = self.bounds()?;
        let text = self.text.get(start..end).ok_or_else(missing)?;
        Ok((text, next))
    }

    /// The current value is a string without escapes: its contents.
    fn plain_str(&mut self) -> Result<Option<(&'de str, usize)>, Error> {
        if self.peek()? != b'"' {
            return Ok(None);
        }
        let (start, end, next) = self.bounds()?;
        while self
            .escapes
            .get(self.escape)
            .is_some_and(|e| (*e as usize) < start)
        {
            self.escape += 1;
        }
        if self
            .escapes
            .get(self.escape)
            .is_some_and(|e| (*e as usize) < end)
        {
            return Ok(None);
        }
        let text = self.text.get(start + 1..end - 1).ok_or_else(missing)?;
        Ok(Some((text, next)))
    }

    /// Hands the current value to serde_json.
    fn delegate<T>(
        &mut self,
        read: impl FnOnce(&mut serde_json::Deserializer<StrRead<'de>>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let (token, next) = self.value()?;
        let value = read(&mut serde_json::Deserializer::from_str(token))?;
        self.at = next;
        Ok(value)
    }

    /// Visits the object or array at the current entry with `visit`.
    fn container<T>(
        &mut self,
        visit: impl FnOnce(&mut Self, usize) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let close = (self.entries[self.at] >> 32) as usize;
        self.at += 1;
        let value = visit(self, close)?;
        // As serde_json: a visitor that stops before the end is an error.
        if self.at != close {
            return Err(de::Error::custom("a container was not read to its end"));
        }
        self.at = close + 1;
        Ok(value)
    }
}

/// The entries of an object or array, up to its close.
struct Items<'b, 'a, 'de> {
    doc: &'b mut Doc<'a, 'de>,
    close: usize,
}

impl<'de> MapAccess<'de> for Items<'_, '_, 'de> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.doc.at == self.close {
            return Ok(None);
        }
        seed.deserialize(Key(&mut *self.doc)).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(&mut *self.doc)
    }
}

impl<'de> SeqAccess<'de> for Items<'_, '_, 'de> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.doc.at == self.close {
            return Ok(None);
        }
        seed.deserialize(&mut *self.doc).map(Some)
    }
}

/// The one entry of a `RawValue`'s map.
struct Raw<'de>(Option<&'de str>);

impl<'de> MapAccess<'de> for Raw<'de> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.0.is_none() {
            return Ok(None);
        }
        seed.deserialize(BorrowedStrDeserializer::new(RAW_VALUE))
            .map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let raw = self.0.take().ok_or_else(missing)?;
        seed.deserialize(BorrowedStrDeserializer::new(raw))
    }
}

/// Methods handed to serde_json as they are.
macro_rules! delegated {
    ($($method:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.delegate(|json| json.$method(visitor))
        }
    )*};
}

impl<'de> Deserializer<'de> for &mut Doc<'_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek()? {
            b'{' => self.container(|doc, close| visitor.visit_map(Items { doc, close })),
            b'[' => self.container(|doc, close| visitor.visit_seq(Items { doc, close })),
            _ => self.deserialize_str_or(visitor, |json, v| json.deserialize_any(v)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str_or(visitor, |json, v| json.deserialize_str(v))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str_or(visitor, |json, v| json.deserialize_string(v))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str_or(visitor, |json, v| json.deserialize_identifier(v))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.peek()? == b'n' {
            return self.delegate(|json| json.deserialize_option(visitor));
        }
        visitor.visit_some(self)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek()? {
            b'{' => self.container(|doc, close| visitor.visit_map(Items { doc, close })),
            _ => self.delegate(|json| json.deserialize_map(visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.peek()? {
            b'{' => self.container(|doc, close| visitor.visit_map(Items { doc, close })),
            // serde_json reads a struct from an array too, field by field.
            b'[' => self.container(|doc, close| visitor.visit_seq(Items { doc, close })),
            _ => self.delegate(|json| json.deserialize_struct(name, fields, visitor)),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek()? {
            b'[' => self.container(|doc, close| visitor.visit_seq(Items { doc, close })),
            _ => self.delegate(|json| json.deserialize_seq(visitor)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let (_, next) = self.value()?;
        self.at = next;
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == RAW_VALUE {
            let (raw, next) = self.value()?;
            self.at = next;
            return visitor.visit_map(Raw(Some(raw)));
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.delegate(|json| json.deserialize_unit_struct(name, visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        self.delegate(|json| json.deserialize_tuple(len, visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.delegate(|json| json.deserialize_tuple_struct(name, len, visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.delegate(|json| json.deserialize_enum(name, variants, visitor))
    }

    delegated!(
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_unit
    );
}

impl<'de> Doc<'_, 'de> {
    /// A string without escapes, borrowed; anything else as serde_json reads it.
    fn deserialize_str_or<V: Visitor<'de>>(
        &mut self,
        visitor: V,
        json: impl FnOnce(&mut serde_json::Deserializer<StrRead<'de>>, V) -> Result<V::Value, Error>,
    ) -> Result<V::Value, Error> {
        match self.plain_str()? {
            Some((text, next)) => {
                self.at = next;
                visitor.visit_borrowed_str(text)
            }
            None => self.delegate(|de| json(de, visitor)),
        }
    }
}

/// An object's key: always a string in a validated text.
struct Key<'b, 'a, 'de>(&'b mut Doc<'a, 'de>);

/// Key methods the webhook's types never use: the ordinary parse reads them.
macro_rules! unsupported_keys {
    ($($method:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(de::Error::custom("a key read as something other than a string"))
        }
    )*};
}

impl<'de> Deserializer<'de> for Key<'_, '_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.0
            .deserialize_str_or(visitor, |json, v| json.deserialize_str(v))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.0.at += 1;
        visitor.visit_unit()
    }

    unsupported_keys!(
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_unit,
        deserialize_option,
        deserialize_seq,
        deserialize_map
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: V,
    ) -> Result<V::Value, Error> {
        Err(de::Error::custom("a key read as a unit struct"))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: V,
    ) -> Result<V::Value, Error> {
        Err(de::Error::custom("a key read as a newtype struct"))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom("a key read as a tuple"))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        _: V,
    ) -> Result<V::Value, Error> {
        Err(de::Error::custom("a key read as a tuple struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Error> {
        Err(de::Error::custom("a key read as a struct"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Error> {
        Err(de::Error::custom("a key read as an enum"))
    }
}
