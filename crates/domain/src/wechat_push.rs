//! WeChat's message push (消息推送) to `/wechat/{app_id}/callback`: signatures,
//! safe-mode (AES) envelopes, and the subscription events huiliu reads.
//!
//! The scheme is WeChat's published one for message push: `signature` is the SHA-1
//! of the token, timestamp and nonce sorted and joined; in safe mode the body
//! carries `Encrypt` and `msg_signature` also covers it. The AES key is the
//! base64 of `EncodingAESKey` plus `=` (32 bytes); the cipher is AES-256-CBC with
//! the key's first 16 bytes as IV, padded PKCS#7-style to 32 bytes; the plaintext
//! is 16 random bytes, the message length (4 bytes, big-endian), the message and
//! the AppID. Bodies come as XML or JSON; in JSON an event's `List` is an object
//! for one template and an array for several.

use crate::credits::SubscribeResult;
use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine;
use serde_json::Value;
use sha1::{Digest, Sha1};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("the signature does not match")]
    BadSignature,
    #[error("the encrypted message cannot be opened: {0}")]
    BadEnvelope(&'static str),
    #[error("the message is addressed to another AppID")]
    WrongAppid,
    #[error("the body is neither WeChat XML nor JSON: {0}")]
    BadBody(String),
}

/// SHA-1 hex of the parts sorted and joined, as WeChat signs pushes.
pub fn signature(parts: &[&str]) -> String {
    let mut sorted = parts.to_vec();
    sorted.sort_unstable();
    let digest = Sha1::digest(sorted.concat().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares a presented signature with the expected one in constant time.
pub fn verify(presented: &str, parts: &[&str]) -> Result<(), PushError> {
    use subtle::ConstantTimeEq;
    let expected = signature(parts);
    if presented.len() == expected.len()
        && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
    {
        Ok(())
    } else {
        Err(PushError::BadSignature)
    }
}

type Encryptor = cbc::Encryptor<aes::Aes256>;
type Decryptor = cbc::Decryptor<aes::Aes256>;
const BLOCK: usize = 32;

/// Standard base64 that accepts non-zero trailing bits: an EncodingAESKey is 43
/// random characters, so its last one rarely decodes canonically.
const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

fn aes_key(encoding_aes_key: &str) -> Result<[u8; 32], PushError> {
    let bytes = LENIENT
        .decode(format!("{encoding_aes_key}="))
        .map_err(|_| PushError::BadEnvelope("the EncodingAESKey is not 43 base64 characters"))?;
    bytes
        .try_into()
        .map_err(|_| PushError::BadEnvelope("the EncodingAESKey is not 32 bytes"))
}

/// Opens a safe-mode `Encrypt` value; the message inside must be for `appid`.
pub fn decrypt(encoding_aes_key: &str, encrypted: &str, appid: &str) -> Result<String, PushError> {
    let key = aes_key(encoding_aes_key)?;
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(encrypted.trim())
        .map_err(|_| PushError::BadEnvelope("not base64"))?;
    if sealed.is_empty() || sealed.len() % 16 != 0 {
        return Err(PushError::BadEnvelope("not whole AES blocks"));
    }
    let mut plain = Decryptor::new(&key.into(), key[..16].into())
        .decrypt_padded_vec_mut::<NoPadding>(&sealed)
        .map_err(|_| PushError::BadEnvelope("AES failed"))?;
    let pad = usize::from(*plain.last().unwrap_or(&0));
    if pad == 0 || pad > BLOCK || pad > plain.len() {
        return Err(PushError::BadEnvelope("bad padding"));
    }
    plain.truncate(plain.len() - pad);
    if plain.len() < 20 {
        return Err(PushError::BadEnvelope("too short"));
    }
    let length = u32::from_be_bytes([plain[16], plain[17], plain[18], plain[19]]) as usize;
    let body = plain
        .get(20..20 + length)
        .ok_or(PushError::BadEnvelope("length beyond the message"))?;
    if &plain[20 + length..] != appid.as_bytes() {
        return Err(PushError::WrongAppid);
    }
    String::from_utf8(body.to_vec()).map_err(|_| PushError::BadEnvelope("not UTF-8"))
}

/// Seals a message as WeChat does (for tests and the fake WeChat).
pub fn encrypt(
    encoding_aes_key: &str,
    message: &str,
    appid: &str,
    random: [u8; 16],
) -> Result<String, PushError> {
    let key = aes_key(encoding_aes_key)?;
    let mut plain = random.to_vec();
    plain.extend_from_slice(&(message.len() as u32).to_be_bytes());
    plain.extend_from_slice(message.as_bytes());
    plain.extend_from_slice(appid.as_bytes());
    let pad = BLOCK - plain.len() % BLOCK;
    plain.extend(std::iter::repeat_n(pad as u8, pad));
    let sealed =
        Encryptor::new(&key.into(), key[..16].into()).encrypt_padded_vec_mut::<NoPadding>(&plain);
    Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
}

/// A push body as a flat JSON object: XML elements become keys (repeated
/// elements an array), text and CDATA become strings.
pub fn parse_body(body: &str) -> Result<Value, PushError> {
    let trimmed = body.trim_start();
    if trimmed.starts_with('<') {
        let document =
            roxmltree::Document::parse(trimmed).map_err(|e| PushError::BadBody(e.to_string()))?;
        Ok(xml_value(document.root_element()))
    } else {
        let value: Value =
            serde_json::from_str(trimmed).map_err(|e| PushError::BadBody(e.to_string()))?;
        value
            .is_object()
            .then_some(value)
            .ok_or_else(|| PushError::BadBody("not an object".into()))
    }
}

fn xml_value(node: roxmltree::Node) -> Value {
    let children: Vec<_> = node.children().filter(|c| c.is_element()).collect();
    if children.is_empty() {
        return Value::String(node.text().unwrap_or_default().trim().to_string());
    }
    let mut object = serde_json::Map::new();
    for child in children {
        let value = xml_value(child);
        match object.get_mut(child.tag_name().name()) {
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                object.insert(child.tag_name().name().to_string(), value);
            }
        }
    }
    Value::Object(object)
}

/// A subscription event WeChat pushed, with the user's openid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionEvent {
    /// The user answered a prompt (`subscribe_msg_popup_event`).
    Popup {
        openid: String,
        answers: Vec<(String, SubscribeResult)>,
    },
    /// The user changed a template in the settings (`subscribe_msg_change_event`;
    /// WeChat pushes only rejections).
    Change {
        openid: String,
        answers: Vec<(String, SubscribeResult)>,
    },
    /// The final result of a send (`subscribe_msg_sent_event`): template, msgid, errcode.
    Sent {
        openid: String,
        results: Vec<(String, String, i64)>,
    },
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The event's list items: `List` as an object or an array, at the top or inside
/// the event's own element (`SubscribeMsgPopupEvent`, …), or that element itself.
fn items<'a>(message: &'a Value, wrapper: &str) -> Vec<&'a Value> {
    let flatten = |value: &'a Value| -> Vec<&'a Value> {
        match value {
            Value::Array(items) => items.iter().collect(),
            Value::Object(_) => vec![value],
            _ => Vec::new(),
        }
    };
    let container = message.get(wrapper);
    match container {
        Some(Value::Object(inner)) if inner.contains_key("List") => flatten(&inner["List"]),
        Some(value) => flatten(value),
        None => message.get("List").map(flatten).unwrap_or_default(),
    }
}

/// The subscription event in a (plaintext) push, if it is one.
pub fn subscription_event(message: &Value) -> Option<SubscriptionEvent> {
    let openid = message.get("FromUserName").and_then(text)?;
    let event = message.get("Event").and_then(text)?;
    let answers = |wrapper: &str| -> Vec<(String, SubscribeResult)> {
        items(message, wrapper)
            .into_iter()
            .filter_map(|item| {
                let template = item.get("TemplateId").and_then(text)?;
                let status = item.get("SubscribeStatusString").and_then(text)?;
                Some((
                    template,
                    SubscribeResult::parse(&status, "SubscribeStatusString").ok()?,
                ))
            })
            .collect()
    };
    match event.as_str() {
        "subscribe_msg_popup_event" => Some(SubscriptionEvent::Popup {
            openid,
            answers: answers("SubscribeMsgPopupEvent"),
        }),
        "subscribe_msg_change_event" => Some(SubscriptionEvent::Change {
            openid,
            answers: answers("SubscribeMsgChangeEvent"),
        }),
        "subscribe_msg_sent_event" => Some(SubscriptionEvent::Sent {
            results: items(message, "SubscribeMsgSentEvent")
                .into_iter()
                .filter_map(|item| {
                    Some((
                        item.get("TemplateId").and_then(text)?,
                        item.get("MsgID").and_then(text)?,
                        item.get("ErrorCode").and_then(text)?.parse().ok()?,
                    ))
                })
                .collect(),
            openid,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const APPID: &str = "wx4f28b4b2dcaafca1";

    #[test]
    fn signatures_sort_their_parts() {
        // sha1("1409304348" + "nonce" + "token"): the parts are sorted first.
        assert_eq!(
            signature(&["token", "1409304348", "nonce"]),
            signature(&["nonce", "token", "1409304348"])
        );
        assert_eq!(
            signature(&["a"]),
            "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"
        );
        assert!(verify(&signature(&["t", "1", "n"]), &["t", "1", "n"]).is_ok());
        assert_eq!(
            verify("0000", &["t", "1", "n"]),
            Err(PushError::BadSignature)
        );
    }

    #[test]
    fn safe_mode_round_trips_and_checks_the_appid() {
        let message =
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Content>回流 ✓</Content></xml>";
        let sealed = encrypt(KEY, message, APPID, [7; 16]).unwrap();
        assert_eq!(decrypt(KEY, &sealed, APPID).unwrap(), message);
        assert_eq!(
            decrypt(KEY, &sealed, "wx0000000000000000"),
            Err(PushError::WrongAppid)
        );
        assert!(decrypt(
            "zbcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            &sealed,
            APPID
        )
        .is_err());
        assert!(decrypt(KEY, "not base64!", APPID).is_err());
        assert!(decrypt(KEY, &sealed[..sealed.len() - 8], APPID).is_err());
    }

    #[test]
    fn popup_events_read_from_xml_with_several_templates() {
        let xml = "<xml><ToUserName><![CDATA[gh_123]]></ToUserName><FromUserName><![CDATA[oUser1]]></FromUserName>
            <CreateTime>1620973045</CreateTime><MsgType><![CDATA[event]]></MsgType>
            <Event><![CDATA[subscribe_msg_popup_event]]></Event>
            <SubscribeMsgPopupEvent>
              <List><TemplateId><![CDATA[tmpl-a]]></TemplateId><SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>0</PopupScene></List>
              <List><TemplateId><![CDATA[tmpl-b]]></TemplateId><SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString><PopupScene>0</PopupScene></List>
            </SubscribeMsgPopupEvent></xml>";
        let event = subscription_event(&parse_body(xml).unwrap()).unwrap();
        assert_eq!(
            event,
            SubscriptionEvent::Popup {
                openid: "oUser1".into(),
                answers: vec![
                    ("tmpl-a".into(), SubscribeResult::Accept),
                    ("tmpl-b".into(), SubscribeResult::Reject)
                ]
            }
        );
    }

    #[test]
    fn json_list_may_be_an_object_or_an_array() {
        let one = r#"{"ToUserName":"gh_1","FromUserName":"oU","CreateTime":1,"MsgType":"event","Event":"subscribe_msg_change_event",
            "List":{"TemplateId":"tmpl-a","SubscribeStatusString":"reject"}}"#;
        let many = r#"{"FromUserName":"oU","Event":"subscribe_msg_popup_event",
            "SubscribeMsgPopupEvent":{"List":[{"TemplateId":"a","SubscribeStatusString":"accept"},{"TemplateId":"b","SubscribeStatusString":"acceptWithAudio"}]}}"#;
        let bare = r#"{"FromUserName":"oU","Event":"subscribe_msg_popup_event",
            "SubscribeMsgPopupEvent":[{"TemplateId":"a","SubscribeStatusString":"accept","PopupScene":"0"}]}"#;
        assert_eq!(
            subscription_event(&parse_body(one).unwrap()),
            Some(SubscriptionEvent::Change {
                openid: "oU".into(),
                answers: vec![("tmpl-a".into(), SubscribeResult::Reject)]
            })
        );
        match subscription_event(&parse_body(many).unwrap()) {
            Some(SubscriptionEvent::Popup { answers, .. }) => assert_eq!(answers.len(), 2),
            other => panic!("{other:?}"),
        }
        match subscription_event(&parse_body(bare).unwrap()) {
            Some(SubscriptionEvent::Popup { answers, .. }) => {
                assert_eq!(answers, vec![("a".into(), SubscribeResult::Accept)])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sent_events_carry_msgid_and_errcode() {
        let xml = "<xml><FromUserName><![CDATA[oU]]></FromUserName><Event><![CDATA[subscribe_msg_sent_event]]></Event>
            <SubscribeMsgSentEvent><List><TemplateId><![CDATA[t1]]></TemplateId><MsgID>1700827132819554304</MsgID>
            <ErrorCode>0</ErrorCode><ErrorStatus><![CDATA[success]]></ErrorStatus></List></SubscribeMsgSentEvent></xml>";
        assert_eq!(
            subscription_event(&parse_body(xml).unwrap()),
            Some(SubscriptionEvent::Sent {
                openid: "oU".into(),
                results: vec![("t1".into(), "1700827132819554304".into(), 0)]
            })
        );
        assert_eq!(
            subscription_event(&parse_body(r#"{"FromUserName":"o","Event":"CLICK"}"#).unwrap()),
            None
        );
        assert!(parse_body("<xml><unclosed></xml>").is_err());
        assert!(parse_body("[1]").is_err());
    }
}
