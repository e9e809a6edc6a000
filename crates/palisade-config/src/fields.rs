//! The keys a `#[derive(Deserialize)]` struct accepts, read from serde itself (so the list in
//! an error message can never drift from the struct).

use serde::de::{self, Deserialize, Deserializer, Visitor};

struct Probe<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("probed"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The field names of `T` as serde sees them (empty for anything but a struct).
pub(crate) fn struct_fields<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_fields_of_a_struct() {
        assert_eq!(
            super::struct_fields::<crate::NftablesSection>(),
            ["table", "priority", "forward", "ports", "netns"]
        );
        assert!(super::struct_fields::<crate::LogSection>().is_empty());
        assert!(super::struct_fields::<String>().is_empty());
    }
}
