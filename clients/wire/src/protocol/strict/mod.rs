//! Strict decoding: each field has exactly one MessagePack type family.
//!
//! rmp_serde is lenient where serde's own visitors are: a `String` accepts a
//! `bin` holding UTF-8, `bytes::Bytes` accepts a `str` or an array of
//! integers, a struct accepts an array, a `Vec<u32>` accepts a `bin`, and a
//! struct's field name may be a `bin` or an integer index. [`Strict`] wraps a
//! deserializer and refuses all of these, at every depth: it forwards each
//! call and wraps the visitor so that one asked for text refuses bytes, one
//! asked for bytes refuses text and arrays, one asked for an array refuses
//! bytes, one asked for a struct refuses arrays, and a map key must be a
//! `str`. Integers keep any MessagePack integer encoding (serde's integer
//! visitors already refuse everything else, and values out of range).
//!
//! It costs no second pass: the wrapping is a few inlined calls per value.
//! Written for rmp_serde's deserializer, which answers `deserialize_any` on a
//! `bin` with `visit_bytes`: asking for an array or a struct goes through
//! `deserialize_any` so that a `bin` there is seen and refused.
//! Enums are passed through unchecked; no request type has one.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, Expected, MapAccess, SeqAccess, Unexpected, Visitor};

/// Deserializes `T` from a MessagePack slice, strictly (see the module doc).
///
/// # Errors
///
/// The frame is not valid MessagePack, or does not have `T`'s exact shape.
pub fn from_slice<'de, T: de::Deserialize<'de>>(frame: &'de [u8]) -> Result<T, rmp_serde::decode::Error> {
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(frame);
    T::deserialize(Strict(&mut deserializer))
}

/// A deserializer that refuses a value of another type family than the one
/// asked for. See the module documentation.
pub struct Strict<D>(pub D);

/// What the visitor was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Whatever the data is (numbers, options, ignored values).
    Any,
    /// A MessagePack `str`.
    Str,
    /// A MessagePack `bin`.
    Bytes,
    /// A MessagePack array.
    Array,
    /// A MessagePack map (a struct or a map).
    Map,
    /// A map key naming a field: a `str`.
    Key,
}

impl Expected for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expect::Any => "a MessagePack value",
            Expect::Str => "a MessagePack str",
            Expect::Bytes => "a MessagePack bin",
            Expect::Array => "a MessagePack array",
            Expect::Map => "a MessagePack map",
            Expect::Key => "a str map key",
        })
    }
}

/// The visitor wrapper: refuses what `expect` excludes, forwards the rest,
/// and wraps nested deserializers and accesses so the rule holds at depth.
struct Checked<V> {
    inner: V,
    expect: Expect,
}

impl<V> Checked<V> {
    fn new(inner: V, expect: Expect) -> Self {
        Checked { inner, expect }
    }

    fn refuse<T, E: de::Error>(&self, got: Unexpected<'_>) -> Result<T, E> {
        Err(E::invalid_type(got, &self.expect))
    }

    /// Whether a value of this family may reach the inner visitor.
    fn allows(&self, family: Expect) -> bool {
        match self.expect {
            Expect::Any => true,
            Expect::Key => family == Expect::Str,
            // Scalars other than text and bytes are left to the inner visitor,
            // which refuses what it does not take.
            expect => family == expect || family == Expect::Any,
        }
    }
}

macro_rules! scalar {
    ($($method:ident($ty:ty) => $unexpected:expr;)*) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
                if self.expect == Expect::Key {
                    #[allow(clippy::redundant_closure_call)]
                    return self.refuse(($unexpected)(v));
                }
                self.inner.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Checked<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    scalar! {
        visit_bool(bool) => Unexpected::Bool;
        visit_i8(i8) => |v| Unexpected::Signed(i64::from(v));
        visit_i16(i16) => |v| Unexpected::Signed(i64::from(v));
        visit_i32(i32) => |v| Unexpected::Signed(i64::from(v));
        visit_i64(i64) => Unexpected::Signed;
        visit_u8(u8) => |v| Unexpected::Unsigned(u64::from(v));
        visit_u16(u16) => |v| Unexpected::Unsigned(u64::from(v));
        visit_u32(u32) => |v| Unexpected::Unsigned(u64::from(v));
        visit_u64(u64) => Unexpected::Unsigned;
        visit_f32(f32) => |v| Unexpected::Float(f64::from(v));
        visit_f64(f64) => Unexpected::Float;
        visit_char(char) => Unexpected::Char;
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Self::Value, E> {
        if self.expect == Expect::Key {
            return self.refuse(Unexpected::Other("an integer"));
        }
        self.inner.visit_i128(v)
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Self::Value, E> {
        if self.expect == Expect::Key {
            return self.refuse(Unexpected::Other("an integer"));
        }
        self.inner.visit_u128(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if !self.allows(Expect::Str) {
            return self.refuse(Unexpected::Str(v));
        }
        self.inner.visit_str(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        if !self.allows(Expect::Str) {
            return self.refuse(Unexpected::Str(v));
        }
        self.inner.visit_borrowed_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        if !self.allows(Expect::Str) {
            return self.refuse(Unexpected::Str(&v));
        }
        self.inner.visit_string(v)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        if !self.allows(Expect::Bytes) {
            return self.refuse(Unexpected::Bytes(v));
        }
        self.inner.visit_bytes(v)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
        if !self.allows(Expect::Bytes) {
            return self.refuse(Unexpected::Bytes(v));
        }
        self.inner.visit_borrowed_bytes(v)
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
        if !self.allows(Expect::Bytes) {
            return self.refuse(Unexpected::Bytes(&v));
        }
        self.inner.visit_byte_buf(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        if self.expect == Expect::Key {
            return self.refuse(Unexpected::Option);
        }
        self.inner.visit_none()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_some(Strict(deserializer))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        if self.expect == Expect::Key {
            return self.refuse(Unexpected::Unit);
        }
        self.inner.visit_unit()
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        if self.expect == Expect::Key {
            return self.refuse(Unexpected::NewtypeStruct);
        }
        self.inner.visit_newtype_struct(Strict(deserializer))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        if !self.allows(Expect::Array) {
            return self.refuse(Unexpected::Seq);
        }
        self.inner.visit_seq(StrictAccess(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        if !self.allows(Expect::Map) {
            return self.refuse(Unexpected::Map);
        }
        self.inner.visit_map(StrictAccess(map))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        if self.expect == Expect::Key {
            return self.refuse(Unexpected::Enum);
        }
        self.inner.visit_enum(data)
    }
}

/// A seed whose deserializer is made strict.
struct StrictSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for StrictSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Strict(deserializer))
    }
}

/// A sequence or map access whose elements are deserialized strictly.
struct StrictAccess<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for StrictAccess<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for StrictAccess<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(KeySeed(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

/// A map key: whatever the key type asks for, the wire has a `str`.
struct KeySeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Key(deserializer))
    }
}

/// The deserializer of a map key: every request's map keys are `str`.
struct Key<D>(D);

macro_rules! key_methods {
    ($($method:ident,)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                self.0.$method(Checked::new(visitor, Expect::Key))
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Key<D> {
    type Error = D::Error;

    key_methods! {
        deserialize_any, deserialize_bool, deserialize_i8, deserialize_i16, deserialize_i32,
        deserialize_i64, deserialize_i128, deserialize_u8, deserialize_u16, deserialize_u32,
        deserialize_u64, deserialize_u128, deserialize_f32, deserialize_f64, deserialize_char,
        deserialize_str, deserialize_string, deserialize_bytes, deserialize_byte_buf,
        deserialize_option, deserialize_unit, deserialize_seq, deserialize_map,
        deserialize_identifier, deserialize_ignored_any,
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Checked::new(visitor, Expect::Key))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Checked::new(visitor, Expect::Key))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Checked::new(visitor, Expect::Key))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, Checked::new(visitor, Expect::Key))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct(name, fields, Checked::new(visitor, Expect::Key))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Checked::new(visitor, Expect::Key))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! forward {
    ($($method:ident => $expect:ident,)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                self.0.$method(Checked::new(visitor, Expect::$expect))
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    forward! {
        deserialize_any => Any,
        deserialize_bool => Any,
        deserialize_i8 => Any,
        deserialize_i16 => Any,
        deserialize_i32 => Any,
        deserialize_i64 => Any,
        deserialize_i128 => Any,
        deserialize_u8 => Any,
        deserialize_u16 => Any,
        deserialize_u32 => Any,
        deserialize_u64 => Any,
        deserialize_u128 => Any,
        deserialize_f32 => Any,
        deserialize_f64 => Any,
        deserialize_char => Str,
        deserialize_str => Str,
        deserialize_string => Str,
        deserialize_bytes => Bytes,
        deserialize_byte_buf => Bytes,
        deserialize_option => Any,
        deserialize_unit => Any,
        deserialize_map => Map,
        deserialize_identifier => Key,
    }

    // An unknown field's value is skipped unchecked, whatever its shape: a
    // later version may add fields of any type.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_ignored_any(visitor)
    }

    // Arrays and structs through `deserialize_any`: rmp_serde would hand a
    // `bin` to these as an array of integers, unseen.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(Checked::new(visitor, Expect::Array))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(Checked::new(visitor, Expect::Array))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(Checked::new(visitor, Expect::Array))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(Checked::new(visitor, Expect::Map))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Checked::new(visitor, Expect::Any))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Checked::new(visitor, Expect::Any))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Checked::new(visitor, Expect::Any))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

#[cfg(test)]
mod tests;
