//! Otoroshi's plugin contexts, read leniently: this is Otoroshi's schema, not
//! ours. Unknown fields are ignored, missing ones defaulted, ids and scalars
//! may be strings, numbers or booleans, and a value of an unexpected shape
//! reads as absent instead of failing the whole input. Only what the shell
//! uses is read; everything else (the route, the global config, ...) is
//! skimmed over without being materialized.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;
use std::marker::PhantomData;

/// The input of `access` (Otoroshi's `ValidateAccess` context) and of
/// `transform_request` (the same, plus `otoroshi_request`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Context<'a> {
    /// The plugin's configuration on the route; ours is its `config`.
    #[serde(borrow)]
    pub config: Lenient<PluginConfigHolder<'a>>,
    pub request: Lenient<RawRequest>,
    /// The apikey Otoroshi validated (`ApikeyCalls`), light form; or null.
    pub apikey: Lenient<Apikey>,
    /// The user an Otoroshi auth module logged in, light form; or null.
    pub user: Lenient<User>,
    #[serde(borrow)]
    pub attrs: Lenient<Attrs<'a>>,
    /// `transform_request` only: the request Otoroshi is about to send upstream.
    pub otoroshi_request: Lenient<OtoroshiRequest>,
}

/// Otoroshi's plugin configuration object (`source`, `functionName`,
/// `memoryPages`, `wasi`, ... and `config`, which holds our settings).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PluginConfigHolder<'a> {
    #[serde(borrow)]
    pub config: Option<&'a RawValue>,
}

/// The incoming request as the client sent it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRequest {
    pub method: Text,
    /// Path and query string, as received.
    pub uri: Text,
    pub path: Text,
    /// Not in Otoroshi's context today; read if a version adds it.
    pub host: Text,
    /// Name → first value.
    pub headers: Headers,
    /// Name → values (decoded).
    pub query: Query,
}

/// The light apikey of the context (`clientId`, `clientName`, `metadata`, `tags`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Apikey {
    #[serde(rename = "clientId", alias = "client_id")]
    pub client_id: Text,
}

/// The light user of the context (`name`, `email`, `profile`, ...).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct User {
    pub email: Text,
    pub name: Text,
}

/// The request attributes Otoroshi shares with plugins (its `TypedMap`,
/// serialized by `ConcurrentMutableTypedMap.json` in
/// `otoroshi/app/utils/typedmap.scala`: each key by its display name, a
/// `JsValue` as is).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Attrs<'a> {
    /// The full apikey (with `readOnly` and `_loc`).
    #[serde(rename = "otoroshi.core.ApiKey")]
    pub apikey: Lenient<FullApikey>,
    /// When Otoroshi received the request, in Unix milliseconds.
    #[serde(rename = "otoroshi.core.RequestStart")]
    pub request_start: Text,
    /// The same, as an ISO 8601 date-time with offset.
    #[serde(rename = "otoroshi.core.RequestTimestamp")]
    pub request_timestamp: Text,
    /// The payload of the token Otoroshi's JWT verifier accepted
    /// (`otoroshi.plugins.Keys.MatchedInputTokenKey`), kept raw: only
    /// [`crate::token`] reads it, and only when a token source is configured.
    #[serde(rename = "otoroshi.core.MatchedInputToken", borrow)]
    pub matched_input_token: Option<&'a RawValue>,
}

/// The fields of Otoroshi's full apikey that the shell reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FullApikey {
    #[serde(rename = "clientId", alias = "client_id")]
    pub client_id: Text,
    #[serde(rename = "readOnly", alias = "read_only")]
    pub read_only: Flag,
    #[serde(rename = "_loc", alias = "location")]
    pub location: Lenient<Location>,
}

/// An entity's location: its organization (tenant) and teams.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Location {
    pub tenant: Text,
    pub teams: Strings,
}

/// The request Otoroshi is about to send to the backend.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OtoroshiRequest {
    pub url: Text,
    pub method: Text,
    pub headers: Headers,
}

/// `T` read from an object; any other JSON value (null included) reads as
/// `T::default()`.
#[derive(Debug, Default)]
pub struct Lenient<T>(pub T);

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for V<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Lenient)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|()| Lenient(T::default()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Lenient(T::default()))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Lenient(T::default()))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Lenient(T::default()))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Lenient(T::default()))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Lenient(T::default()))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient(T::default()))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient(T::default()))
            }
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// A scalar as text: a string as is, a number or a boolean as written. Null,
/// arrays and objects read as absent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Text(pub Option<String>);

impl Text {
    /// The text, unless absent or empty.
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref().filter(|s| !s.is_empty())
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq).map(|()| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        drain_map(map).map(|()| None)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor).map(Text)
    }
}

/// A boolean; also `"true"`/`"false"`. Anything else reads as false.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = deserializer.deserialize_any(TextVisitor)?;
        Ok(Flag(text.is_some_and(|t| t.eq_ignore_ascii_case("true"))))
    }
}

/// A list of scalars (a single scalar is a list of one); anything else is empty.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Strings(pub Vec<String>);

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of scalars")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(Text(item)) = seq.next_element::<Text>()? {
                    out.extend(item);
                }
                Ok(out)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map).map(|()| Vec::new())
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(vec![v.to_string()])
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(vec![v.to_string()])
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(vec![v.to_string()])
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(vec![v.to_string()])
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(vec![v.to_string()])
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
        }
        deserializer.deserialize_any(V).map(Strings)
    }
}

/// Headers as Otoroshi passes them, name → value, in the order given. A list
/// value counts by its first element; null, objects and empty lists are
/// dropped; anything but an object is no headers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<(String, String)>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of headers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    let Strings(values) = map.next_value::<Strings>()?;
                    if let Some(first) = values.into_iter().next() {
                        out.push((name, first));
                    }
                }
                Ok(out)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|()| Vec::new())
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
        }
        deserializer.deserialize_any(V).map(Headers)
    }
}

/// The decoded query, name → values, in the order given.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Query(pub Vec<(String, Vec<String>)>);

impl<'de> Deserialize<'de> for Query {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Lenient(QueryMap(pairs)) = Lenient::<QueryMap>::deserialize(deserializer)?;
        Ok(Query(pairs))
    }
}

#[derive(Debug, Default)]
struct QueryMap(Vec<(String, Vec<String>)>);

impl<'de> Deserialize<'de> for QueryMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = QueryMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of query parameters")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    let Strings(values) = map.next_value::<Strings>()?;
                    out.push((name, values));
                }
                Ok(QueryMap(out))
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// Parses a context. Fails only on input that is not JSON or not an object.
pub fn parse(input: &[u8]) -> Result<Context<'_>, String> {
    // Serde would also read a struct from an array, by position.
    if input.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("the input is not a JSON object".into());
    }
    serde_json::from_slice(input).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn odd_shapes_read_as_absent_not_as_errors() {
        let input = br#"{
            "snowflake": 1925810680351425394,
            "request": {"id": 339, "method": "GET", "uri": "/a?x=1", "headers": {"Host": "h", "X-N": 5, "X-L": ["a", "b"], "X-Null": null},
                        "query": {"x": ["1"], "y": "2"}},
            "apikey": null, "user": "nobody",
            "attrs": {"otoroshi.core.RequestStart": 1747984020685,
                      "otoroshi.core.ApiKey": {"clientId": 42, "readOnly": "true", "_loc": {"tenant": "t", "teams": "x"}},
                      "otoroshi.next.core.Route": {"plugins": [{"config": {"config": {"deep": [1, 2, {"a": null}]}}}]}},
            "config": {"functionName": "access", "config": {"mode": "audit"}},
            "otoroshi_request": [],
            "route": {"id": 7}
        }"#;
        let ctx = parse(input).unwrap();
        let request = &ctx.request.0;
        assert_eq!(request.method.get(), Some("GET"));
        assert_eq!(
            request.headers.0,
            vec![
                ("Host".to_string(), "h".to_string()),
                ("X-N".to_string(), "5".to_string()),
                ("X-L".to_string(), "a".to_string())
            ]
        );
        assert_eq!(
            ctx.request.0.query.0,
            vec![
                ("x".to_string(), vec!["1".to_string()]),
                ("y".to_string(), vec!["2".to_string()])
            ]
        );
        assert_eq!(ctx.apikey.0.client_id.get(), None);
        assert_eq!(ctx.user.0.email.get(), None);
        assert_eq!(ctx.attrs.0.request_start.get(), Some("1747984020685"));
        let full = &ctx.attrs.0.apikey.0;
        assert_eq!(full.client_id.get(), Some("42"));
        assert!(full.read_only.0);
        assert_eq!(full.location.0.teams.0, vec!["x".to_string()]);
        assert_eq!(ctx.config.0.config.unwrap().get(), r#"{"mode": "audit"}"#);
        assert!(ctx.otoroshi_request.0.headers.0.is_empty());
    }

    #[test]
    fn not_an_object_is_an_error_and_an_empty_object_is_all_defaults() {
        assert!(parse(b"[]").is_err());
        assert!(parse(b"{").is_err());
        let ctx = parse(b"{}").unwrap();
        assert!(ctx.config.0.config.is_none());
        assert!(ctx.request.0.headers.0.is_empty());
    }
}
