//! Subscription-message templates and the rules WeChat applies to each field's
//! value. A message is checked here before anything is queued, so a value WeChat
//! would refuse (errcode 47003) is a 422 naming the field, and no credit is spent.
//!
//! The field type comes from the key's prefix (`thing1`, `number01`,
//! `character_string2`). Limits are WeChat's documented ones (subscribeMessage.send,
//! "data" value rules); lengths count characters, not bytes.

use crate::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The most fields a template may declare.
pub const MAX_FIELDS: usize = 20;
/// The most characters of a template id and of a title or field name.
pub const MAX_TEMPLATE_ID_CHARS: usize = 128;
pub const MAX_TITLE_CHARS: usize = 64;

/// What a field holds, from its key's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Thing,
    Number,
    Letter,
    Symbol,
    CharacterString,
    Time,
    Date,
    Amount,
    PhoneNumber,
    CarNumber,
    Name,
    Phrase,
    Enum,
}

/// Longest prefixes first, so `character_string` is not read as something shorter.
const PREFIXES: [(&str, FieldKind); 13] = [
    ("character_string", FieldKind::CharacterString),
    ("phone_number", FieldKind::PhoneNumber),
    ("car_number", FieldKind::CarNumber),
    ("amount", FieldKind::Amount),
    ("number", FieldKind::Number),
    ("letter", FieldKind::Letter),
    ("symbol", FieldKind::Symbol),
    ("phrase", FieldKind::Phrase),
    ("thing", FieldKind::Thing),
    ("time", FieldKind::Time),
    ("date", FieldKind::Date),
    ("name", FieldKind::Name),
    ("enum", FieldKind::Enum),
];

impl FieldKind {
    /// The kind of a key such as `thing1`: a known prefix followed by 1–3 digits.
    pub fn of_key(key: &str) -> Option<Self> {
        PREFIXES.iter().find_map(|(prefix, kind)| {
            let digits = key.strip_prefix(prefix)?;
            (!digits.is_empty() && digits.len() <= 3 && digits.bytes().all(|b| b.is_ascii_digit()))
                .then_some(*kind)
        })
    }

    /// The rule, as told to a client whose value breaks it.
    pub fn rule(self) -> &'static str {
        match self {
            FieldKind::Thing => "1–20 characters, no line breaks or control characters",
            FieldKind::Number => "up to 32 digits, with an optional decimal point",
            FieldKind::Letter => "up to 32 Latin letters",
            FieldKind::Symbol => "up to 5 symbols (no letters, digits or spaces)",
            FieldKind::CharacterString => "up to 32 Latin letters, digits and symbols",
            FieldKind::Time => "a 24-hour time such as 15:01 or 15:01:30, optionally after a date, or a range joined with ~",
            FieldKind::Date => "a date such as 2026年11月24日, 2026-11-24 or 11月24日, optionally with a 24-hour time, or a range joined with ~",
            FieldKind::Amount => "an amount: an optional currency symbol, up to 10 digits, optional decimals, optionally ending in 元",
            FieldKind::PhoneNumber => "up to 17 digits and symbols, such as +86-0766-66888866",
            FieldKind::CarNumber => "up to 8 characters: Latin letters and digits, a Chinese character allowed first and last",
            FieldKind::Name => "up to 10 characters if any is Chinese, otherwise up to 20 letters and symbols",
            FieldKind::Phrase => "up to 5 Chinese characters",
            FieldKind::Enum => "one of the template's listed values",
        }
    }
}

/// One-time (each acceptance allows one send) or long-term (a standing permission).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateKind {
    OneTime,
    LongTerm,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateField {
    pub key: String,
    pub name: String,
    pub kind: FieldKind,
    /// For `enum` fields: the values WeChat accepts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A validated template definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub template_id: String,
    pub title: String,
    pub kind: TemplateKind,
    pub fields: Vec<TemplateField>,
    /// Set when WeChat banned the template (43107): messages with it are skipped
    /// until the template is stored again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldInput {
    key: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateInput {
    title: String,
    kind: TemplateKind,
    fields: Vec<FieldInput>,
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

fn invalid(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError::new(code, field, message)
}

/// Parses a template id from a path (1–128 printable ASCII characters, as WeChat's
/// ids are).
pub fn parse_template_id(id: &str) -> Result<String, FieldError> {
    if id.is_empty()
        || chars(id) > MAX_TEMPLATE_ID_CHARS
        || !id.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(invalid(
            "invalid_template_id",
            "template_id",
            format!("a template id is 1–{MAX_TEMPLATE_ID_CHARS} printable ASCII characters"),
        ));
    }
    Ok(id.to_string())
}

impl Template {
    /// Parses and checks a definition such as
    /// `{"title", "kind": "one_time", "fields": [{"key": "thing1", "name": "…"}]}`.
    pub fn parse(template_id: &str, body: &Value) -> Result<Self, FieldError> {
        let template_id = parse_template_id(template_id)?;
        let input: TemplateInput = serde_json::from_value(body.clone()).map_err(|e| {
            invalid(
                "invalid_template",
                "body",
                format!("not a template definition: {e}"),
            )
        })?;
        if input.title.trim().is_empty() || chars(&input.title) > MAX_TITLE_CHARS {
            return Err(invalid(
                "invalid_length",
                "title",
                format!("1–{MAX_TITLE_CHARS} characters"),
            ));
        }
        if input.fields.is_empty() || input.fields.len() > MAX_FIELDS {
            return Err(invalid(
                "invalid_fields",
                "fields",
                format!("a template has 1–{MAX_FIELDS} fields"),
            ));
        }
        let mut fields: Vec<TemplateField> = Vec::with_capacity(input.fields.len());
        for (i, field) in input.fields.into_iter().enumerate() {
            let at = format!("fields[{i}]");
            let kind = FieldKind::of_key(&field.key).ok_or_else(|| {
                invalid(
                    "unknown_field_type",
                    format!("{at}.key"),
                    format!(
                        "{:?} is not a WeChat field key such as thing1, number2, time3 or character_string4",
                        field.key
                    ),
                )
            })?;
            if fields.iter().any(|f| f.key == field.key) {
                return Err(invalid(
                    "duplicate_field",
                    format!("{at}.key"),
                    format!("{:?} is listed twice", field.key),
                ));
            }
            if chars(&field.name) > MAX_TITLE_CHARS {
                return Err(invalid(
                    "invalid_length",
                    format!("{at}.name"),
                    format!("at most {MAX_TITLE_CHARS} characters"),
                ));
            }
            match (kind, field.values.is_empty()) {
                (FieldKind::Enum, true) => {
                    return Err(invalid(
                        "missing_values",
                        format!("{at}.values"),
                        "an enum field lists the values WeChat accepts",
                    ))
                }
                (FieldKind::Enum, false) => {}
                (_, false) => {
                    return Err(invalid(
                        "unexpected_values",
                        format!("{at}.values"),
                        "only enum fields list values",
                    ))
                }
                (_, true) => {}
            }
            fields.push(TemplateField {
                key: field.key,
                name: field.name,
                kind,
                values: field.values,
            });
        }
        Ok(Template {
            template_id,
            title: input.title,
            kind: input.kind,
            fields,
            disabled_reason: None,
        })
    }

    /// Checks a message's `data` (`{"thing1": "…"}`, or WeChat's own
    /// `{"thing1": {"value": "…"}}`) against the template: every field present,
    /// no other keys, each value within its rule. Errors name `data.<key>`.
    pub fn check_data(&self, data: &Map<String, Value>) -> Result<(), FieldError> {
        if let Some(key) = data
            .keys()
            .find(|k| !self.fields.iter().any(|f| &f.key == *k))
        {
            return Err(invalid(
                "unknown_field",
                format!("data.{key}"),
                format!("template {} has no field {key:?}", self.template_id),
            ));
        }
        for field in &self.fields {
            let at = format!("data.{}", field.key);
            let value = match data.get(&field.key) {
                None => {
                    return Err(invalid(
                        "missing_field",
                        at,
                        "the template needs this field",
                    ))
                }
                Some(Value::String(text)) => text.as_str(),
                Some(Value::Object(wrapped)) => match wrapped.get("value") {
                    Some(Value::String(text)) if wrapped.len() == 1 => text.as_str(),
                    _ => {
                        return Err(invalid(
                            "invalid_type",
                            at,
                            "a value is a string, or {\"value\": \"…\"}",
                        ))
                    }
                },
                Some(_) => {
                    return Err(invalid(
                        "invalid_type",
                        at,
                        "a value is a string, or {\"value\": \"…\"}",
                    ))
                }
            };
            if !value_fits(field, value) {
                return Err(invalid(
                    "invalid_value",
                    at,
                    format!(
                        "{} ({}): {}",
                        field.key,
                        kind_name(field.kind),
                        field.kind.rule()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A template from WeChat's template list (`/wxaapi/newtmpl/gettemplate`):
/// `priTmplId`, `title`, `content` with one `名称:{{thing1.DATA}}` per line,
/// `type` 2 (one-time) or 3 (long-term), and `keywordEnumValueList` giving enum
/// fields' values by `keywordCode` (`enum1.DATA`).
pub fn from_wechat_list_item(item: &Value) -> Result<Template, FieldError> {
    let text = |key: &str| item.get(key).and_then(Value::as_str).unwrap_or_default();
    let kind = match item.get("type").and_then(Value::as_i64) {
        Some(3) => "long_term",
        _ => "one_time",
    };
    let mut enums = std::collections::HashMap::new();
    for entry in item
        .get("keywordEnumValueList")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let code = entry
            .get("keywordCode")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let key = code.trim_end_matches(".DATA").to_string();
        enums.insert(
            key,
            entry.get("enumValueList").cloned().unwrap_or(Value::Null),
        );
    }
    let mut fields = Vec::new();
    for line in text("content").lines() {
        let (Some(open), Some(close)) = (line.find("{{"), line.find(".DATA}}")) else {
            continue;
        };
        if close <= open + 2 {
            continue;
        }
        let key = &line[open + 2..close];
        let name = line[..open].trim().trim_end_matches([':', '：']).trim();
        let mut field = serde_json::json!({"key": key, "name": name});
        if let Some(values) = enums.get(key) {
            field["values"] = values.clone();
        }
        fields.push(field);
    }
    Template::parse(
        text("priTmplId"),
        &serde_json::json!({"title": text("title"), "kind": kind, "fields": fields}),
    )
}

fn kind_name(kind: FieldKind) -> &'static str {
    PREFIXES
        .iter()
        .find(|(_, k)| *k == kind)
        .map_or("field", |(prefix, _)| prefix)
}

/// Han ideographs (CJK Unified Ideographs and extension A).
fn is_chinese(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}')
}

/// Punctuation and other signs: anything printable that is not a letter, digit,
/// Chinese character or space.
fn is_symbol(c: char) -> bool {
    !c.is_alphanumeric() && !c.is_whitespace() && !c.is_control()
}

fn value_fits(field: &TemplateField, value: &str) -> bool {
    let n = chars(value);
    if value.trim().is_empty() || value.chars().any(|c| c.is_control()) {
        return false;
    }
    match field.kind {
        FieldKind::Thing => n <= 20,
        FieldKind::Number => n <= 32 && is_decimal(value),
        FieldKind::Letter => n <= 32 && value.chars().all(|c| c.is_ascii_alphabetic()),
        FieldKind::Symbol => n <= 5 && value.chars().all(is_symbol),
        FieldKind::CharacterString => {
            n <= 32
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || (c.is_ascii() && is_symbol(c)))
        }
        FieldKind::Time => each_side_of_range(value, |part| match part.rsplit_once(' ') {
            Some((date, time)) => is_date(date) && is_clock(time),
            None => is_clock(part),
        }),
        FieldKind::Date => each_side_of_range(value, |part| match part.rsplit_once(' ') {
            Some((date, time)) => is_date(date) && is_clock(time),
            None => is_date(part),
        }),
        FieldKind::Amount => is_amount(value),
        FieldKind::PhoneNumber => {
            n <= 17
                && value
                    .chars()
                    .all(|c| c.is_ascii_digit() || (c.is_ascii() && is_symbol(c)))
                && value.chars().any(|c| c.is_ascii_digit())
        }
        FieldKind::CarNumber => {
            let chars: Vec<char> = value.chars().collect();
            n <= 8
                && chars.iter().enumerate().all(|(i, &c)| {
                    c.is_ascii_alphanumeric() || (is_chinese(c) && (i == 0 || i == chars.len() - 1))
                })
        }
        FieldKind::Name => {
            if !value.is_ascii() {
                n <= 10
                    && value.chars().all(|c| {
                        is_chinese(c) || c.is_ascii_alphabetic() || is_symbol(c) || c == ' '
                    })
            } else {
                n <= 20
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphabetic() || is_symbol(c) || c == ' ')
            }
        }
        FieldKind::Phrase => n <= 5 && value.chars().all(is_chinese),
        FieldKind::Enum => field.values.iter().any(|v| v == value),
    }
}

fn each_side_of_range(value: &str, check: impl Fn(&str) -> bool) -> bool {
    let parts: Vec<&str> = value.split('~').map(str::trim).collect();
    parts.len() <= 2 && parts.iter().all(|p| check(p))
}

fn is_decimal(value: &str) -> bool {
    let mut parts = value.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next();
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

fn number_in(text: &str, range: std::ops::RangeInclusive<u32>, max_digits: usize) -> bool {
    !text.is_empty()
        && text.len() <= max_digits
        && text.bytes().all(|b| b.is_ascii_digit())
        && text.parse::<u32>().is_ok_and(|n| range.contains(&n))
}

/// `HH:MM` or `HH:MM:SS`, 24-hour.
fn is_clock(text: &str) -> bool {
    let parts: Vec<&str> = text.split(':').collect();
    matches!(parts.len(), 2 | 3)
        && number_in(parts[0], 0..=23, 2)
        && number_in(parts[1], 0..=59, 2)
        && parts.get(2).is_none_or(|s| number_in(s, 0..=59, 2))
}

/// `2026年11月24日`, `2026年11月`, `11月24日`, or `2026-11-24` / `11-24` with
/// `-`, `/` or `.` between the parts.
fn is_date(text: &str) -> bool {
    let year = |t: &str| number_in(t, 1..=9999, 4);
    let month = |t: &str| number_in(t, 1..=12, 2);
    let day = |t: &str| number_in(t, 1..=31, 2);
    if let Some(rest) = text.strip_suffix('日') {
        // y年m月d日 or m月d日
        return match rest.split_once('月') {
            Some((head, d)) if day(d) => match head.split_once('年') {
                Some((y, m)) => year(y) && month(m),
                None => month(head),
            },
            _ => false,
        };
    }
    if let Some(rest) = text.strip_suffix('月') {
        return rest
            .split_once('年')
            .is_some_and(|(y, m)| year(y) && month(m));
    }
    let Some(separator) = ['-', '/', '.'].into_iter().find(|s| text.contains(*s)) else {
        return false;
    };
    let parts: Vec<&str> = text.split(separator).collect();
    match parts.as_slice() {
        [y, m, d] => year(y) && month(m) && day(d),
        [m, d] => month(m) && day(d),
        _ => false,
    }
}

/// An optional currency symbol, 1–10 digits, optional decimals, optional 元.
fn is_amount(text: &str) -> bool {
    let text = text.strip_suffix('元').unwrap_or(text);
    let mut chars = text.chars();
    let body = match chars.next() {
        Some(c) if !c.is_ascii_digit() && is_symbol(c) => chars.as_str(),
        _ => text,
    };
    let whole = body.split('.').next().unwrap_or_default();
    is_decimal(body) && whole.len() <= 10
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_are_read_from_wechat_s_list() {
        let item = json!({
            "priTmplId": "9Aw5ZV1j9xdWTFEkqCpZ7mIBbSC34khK55OtzUPl0rU",
            "title": "订单发货通知",
            "content": "商品名称:{{thing1.DATA}}\n发货时间：{{time2.DATA}}\n状态:{{enum3.DATA}}\n",
            "example": "",
            "type": 2,
            "keywordEnumValueList": [{"keywordCode": "enum3.DATA", "enumValueList": ["已发货", "已签收"]}]
        });
        let template = from_wechat_list_item(&item).unwrap();
        assert_eq!(template.kind, TemplateKind::OneTime);
        let keys: Vec<_> = template
            .fields
            .iter()
            .map(|f| (f.key.as_str(), f.name.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("thing1", "商品名称"),
                ("time2", "发货时间"),
                ("enum3", "状态")
            ]
        );
        assert_eq!(template.fields[2].values, ["已发货", "已签收"]);
        let long = json!({"priTmplId": "t-long", "title": "提醒", "content": "内容:{{thing1.DATA}}", "type": 3});
        assert_eq!(
            from_wechat_list_item(&long).unwrap().kind,
            TemplateKind::LongTerm
        );
        let broken = json!({"priTmplId": "t", "title": "x", "content": "没有字段", "type": 2});
        assert!(from_wechat_list_item(&broken).is_err());
    }

    fn template(fields: Value) -> Template {
        Template::parse(
            "tmpl-1",
            &json!({"title": "订单状态", "kind": "one_time", "fields": fields}),
        )
        .unwrap()
    }

    fn check(key: &str, value: &str) -> Result<(), FieldError> {
        let values = if key.starts_with("enum") {
            json!(["已发货", "已签收"])
        } else {
            json!([])
        };
        let t = template(json!([{ "key": key, "name": "x", "values": values }]));
        t.check_data(json!({ key: value }).as_object().unwrap())
    }

    proptest::proptest! {
        /// `thing` counts characters: any 1–20 printable characters pass (even 80
        /// bytes of Chinese or emoji), 21 never do.
        #[test]
        fn thing_length_is_counted_in_characters(text in "[\\p{Han}a-z0-9，。！😀 ]{1,30}") {
            let n = text.chars().count();
            let result = check("thing1", &text);
            let expected = n <= 20 && !text.trim().is_empty();
            proptest::prop_assert_eq!(result.is_ok(), expected, "{} characters, {} bytes", n, text.len());
        }

        #[test]
        fn numbers_are_digits_with_at_most_one_point(whole in "[0-9]{1,20}", fraction in proptest::option::of("[0-9]{1,11}")) {
            let value = match &fraction { Some(f) => format!("{whole}.{f}"), None => whole.clone() };
            proptest::prop_assert_eq!(check("number1", &value).is_ok(), value.chars().count() <= 32);
        }
    }

    #[test]
    fn kinds_come_from_key_prefixes() {
        assert_eq!(FieldKind::of_key("thing1"), Some(FieldKind::Thing));
        assert_eq!(FieldKind::of_key("number01"), Some(FieldKind::Number));
        assert_eq!(
            FieldKind::of_key("character_string12"),
            Some(FieldKind::CharacterString)
        );
        assert_eq!(
            FieldKind::of_key("phone_number3"),
            Some(FieldKind::PhoneNumber)
        );
        for bad in [
            "thing",
            "thingx",
            "things1",
            "thing1234",
            "Thing1",
            "money1",
            "",
        ] {
            assert_eq!(FieldKind::of_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn values_within_the_documented_rules_pass() {
        for (key, value) in [
            ("thing1", "您的订单已发货，请注意查收哦亲爱的用户们"), // 20 characters, 60 bytes
            ("number2", "12345.67"),
            ("letter3", "ABCdef"),
            ("symbol4", "¥%@"),
            ("character_string5", "SF1234567890-A"),
            ("time6", "15:01"),
            ("time6", "2019年10月1日 15:01"),
            ("time6", "15:01 ~ 16:30:00"),
            ("date7", "2019年10月1日"),
            ("date7", "2018-01-01"),
            ("date7", "01/31"),
            ("date7", "2026年11月"),
            ("date7", "2019年10月1日 15:01 ~ 2019年10月2日 15:01"),
            ("amount8", "¥100.00"),
            ("amount8", "99元"),
            ("amount8", "￥1234567890.5元"),
            ("phone_number9", "+86-0766-66888866"),
            ("car_number10", "粤A8Z888挂"),
            ("name11", "张三"),
            ("name11", "Zhang San"),
            ("phrase12", "配送中"),
            ("enum13", "已发货"),
        ] {
            assert_eq!(check(key, value), Ok(()), "{key} = {value:?}");
        }
    }

    #[test]
    fn values_breaking_a_rule_name_the_field() {
        for (key, value) in [
            ("thing1", "您的订单已发货，请注意查收哦亲爱的用户们呀"), // 21 characters
            ("thing1", "两行\n文字"),
            ("thing1", ""),
            ("thing1", "   "),
            ("number2", "12a"),
            ("number2", "1.2.3"),
            ("number2", &"9".repeat(33)),
            ("letter3", "abc1"),
            ("symbol4", "%%%%%%"),
            ("symbol4", "a!"),
            ("character_string5", "订单123"),
            ("time6", "25:00"),
            ("time6", "15:61"),
            ("time6", "3pm"),
            ("date7", "2019年13月1日"),
            ("date7", "yesterday"),
            ("date7", "1~2~3"),
            ("amount8", "¥12345678901"),
            ("amount8", "¥¥10"),
            ("phone_number9", "+86 0766 66888866"),
            ("phone_number9", "123456789012345678"),
            ("car_number10", "粤A8Z888挂X"),
            ("car_number10", "A粤8Z888"),
            ("name11", "欧阳诸葛司马慕容长孙一"),
            ("name11", "ABCDEFGHIJKLMNOPQRSTU"),
            ("phrase12", "配送中ok"),
            ("phrase12", "正在配送中啊"),
            ("enum13", "已取消"),
        ] {
            let err = check(key, value).unwrap_err();
            assert_eq!(
                err.field.as_deref(),
                Some(&*format!("data.{key}")),
                "{key} = {value:?}"
            );
            assert_eq!(err.code, "invalid_value");
        }
    }

    #[test]
    fn data_must_match_the_template_keys_and_shapes() {
        let t =
            template(json!([{"key": "thing1", "name": "商品"}, {"key": "time2", "name": "时间"}]));
        let missing = t
            .check_data(json!({"thing1": "杯子"}).as_object().unwrap())
            .unwrap_err();
        assert_eq!(
            (missing.code, missing.field.as_deref()),
            ("missing_field", Some("data.time2"))
        );
        let extra = t
            .check_data(
                json!({"thing1": "杯子", "time2": "15:01", "thing9": "x"})
                    .as_object()
                    .unwrap(),
            )
            .unwrap_err();
        assert_eq!(extra.field.as_deref(), Some("data.thing9"));
        let wrapped = json!({"thing1": {"value": "杯子"}, "time2": {"value": "15:01"}});
        assert_eq!(t.check_data(wrapped.as_object().unwrap()), Ok(()));
        let number = t
            .check_data(json!({"thing1": 5, "time2": "15:01"}).as_object().unwrap())
            .unwrap_err();
        assert_eq!(
            (number.code, number.field.as_deref()),
            ("invalid_type", Some("data.thing1"))
        );
    }

    #[test]
    fn definitions_are_checked_field_by_field() {
        let parse = |body: Value| Template::parse("t", &body).unwrap_err();
        let err = parse(
            json!({"title": "x", "kind": "one_time", "fields": [{"key": "thing1"}, {"key": "money2"}]}),
        );
        assert_eq!(err.field.as_deref(), Some("fields[1].key"));
        let err = parse(
            json!({"title": "x", "kind": "one_time", "fields": [{"key": "thing1"}, {"key": "thing1"}]}),
        );
        assert_eq!(err.code, "duplicate_field");
        let err = parse(json!({"title": "x", "kind": "one_time", "fields": [{"key": "enum1"}]}));
        assert_eq!(err.field.as_deref(), Some("fields[0].values"));
        let err = parse(json!({"title": "", "kind": "one_time", "fields": [{"key": "thing1"}]}));
        assert_eq!(err.field.as_deref(), Some("title"));
        let err = parse(json!({"title": "x", "kind": "forever", "fields": [{"key": "thing1"}]}));
        assert_eq!(err.field.as_deref(), Some("body"));
        let err = parse(json!({"title": "x", "kind": "one_time", "fields": []}));
        assert_eq!(err.field.as_deref(), Some("fields"));
        assert!(parse_template_id("bad id").is_err());
        assert!(parse_template_id(&"x".repeat(129)).is_err());
    }
}
