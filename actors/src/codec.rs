//! Encoding of cluster payloads. Every encode and decode goes through here, so moving off
//! bincode (stopped upstream; see DESIGN.md §9) is a one-file change.
//!
//! ractor_cluster's `BytesConvertable::from_bytes` cannot fail, and a payload it cannot decode
//! would otherwise vanish, leaving the caller to time out. [`Wire`] therefore carries either the
//! value or the decoding error, which the receiver logs and answers with.

use ractor::BytesConvertable;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// First byte of every payload: the format version, so an incompatible peer is named, not guessed.
const FORMAT_V1: u8 = 1;
/// Marks a payload the sender could not encode (the body is the error text).
const FORMAT_UNENCODABLE: u8 = 0xff;

/// Why a payload could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Encoding failed on this node.
    #[error("cannot encode {type_name}: {reason}")]
    Encode {
        /// Rust type being encoded.
        type_name: &'static str,
        /// The encoder's message.
        reason: String,
    },
    /// Decoding failed on this node.
    #[error("cannot decode {type_name}: {reason}")]
    Decode {
        /// Rust type being decoded.
        type_name: &'static str,
        /// The decoder's message.
        reason: String,
    },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
}

/// Encodes a value.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError::Encode {
        type_name: std::any::type_name::<T>(),
        reason: e.to_string(),
    })
}

/// Decodes a value, refusing trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let err = |reason: String| CodecError::Decode {
        type_name: std::any::type_name::<T>(),
        reason,
    };
    let (value, read) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| err(e.to_string()))?;
    if read != bytes.len() {
        return Err(err(format!("{} trailing bytes", bytes.len() - read)));
    }
    Ok(value)
}

/// A payload inside a cluster message: the value, or why it could not be decoded.
#[derive(Debug)]
pub struct Wire<T>(Result<T, CodecError>);

impl<T> Wire<T> {
    /// Wraps a value to send.
    pub fn new(value: T) -> Self {
        Self(Ok(value))
    }

    /// The value, or the decoding error (already logged when it happened).
    pub fn into_inner(self) -> Result<T, CodecError> {
        self.0
    }
}

impl<T: Serialize + DeserializeOwned> BytesConvertable for Wire<T> {
    fn into_bytes(self) -> Vec<u8> {
        let encoded = self.0.and_then(|value| encode(&value));
        match encoded {
            Ok(mut body) => {
                body.insert(0, FORMAT_V1);
                body
            }
            Err(e) => {
                tracing::error!(error = %e, "sending an unencodable cluster payload");
                let mut body = e.to_string().into_bytes();
                body.insert(0, FORMAT_UNENCODABLE);
                body
            }
        }
    }

    fn from_bytes(bytes: Vec<u8>) -> Self {
        let type_name = std::any::type_name::<T>();
        let result = match bytes.split_first() {
            Some((&FORMAT_V1, body)) => decode(body),
            Some((&FORMAT_UNENCODABLE, body)) => Err(CodecError::Encode {
                type_name,
                reason: format!("on the sending node: {}", String::from_utf8_lossy(body)),
            }),
            Some((version, _)) => Err(CodecError::Decode {
                type_name,
                reason: format!("payload format {version} is not known to this node"),
            }),
            None => Err(CodecError::Decode {
                type_name,
                reason: "empty payload".into(),
            }),
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "undecodable cluster payload (are all nodes the same version?)");
        }
        Self(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        name: String,
        bytes: Vec<u8>,
        n: Option<u64>,
    }

    fn sample() -> Sample {
        Sample {
            name: "hello".into(),
            bytes: vec![0, 1, 2, 255],
            n: Some(42),
        }
    }

    #[test]
    fn wire_round_trip() {
        let bytes = Wire::new(sample()).into_bytes();
        assert_eq!(bytes[0], FORMAT_V1);
        let back = Wire::<Sample>::from_bytes(bytes).into_inner();
        assert_eq!(back, Ok(sample()));
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        for garbage in [
            vec![],
            vec![FORMAT_V1],
            vec![FORMAT_V1, 0xff, 0xff],
            vec![7, 1, 2],
        ] {
            let back = Wire::<Sample>::from_bytes(garbage.clone()).into_inner();
            assert!(
                matches!(back, Err(CodecError::Decode { .. })),
                "{garbage:?} gave {back:?}"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&sample()).unwrap_or_default();
        bytes.push(0);
        assert!(decode::<Sample>(&bytes).is_err());
    }

    #[test]
    fn a_sender_side_error_travels_as_an_error() {
        let wire: Wire<Sample> = Wire(Err(CodecError::Decode {
            type_name: "x",
            reason: "broken upstream".into(),
        }));
        let back = Wire::<Sample>::from_bytes(wire.into_bytes()).into_inner();
        match back {
            Err(CodecError::Encode { reason, .. }) => assert!(reason.contains("broken upstream")),
            other => panic!("unexpected {other:?}"),
        }
    }
}
