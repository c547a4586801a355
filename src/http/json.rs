//! A JSON body extractor whose every rejection is a problem document naming
//! what is wrong: the content type, the size, the syntax, or the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::problem::{ApiError, FieldError};

pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "Send the body as JSON with Content-Type: application/json.".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(
                    "The body exceeds the size limit for JSON requests.".into(),
                )
            } else {
                ApiError::BadRequest("The request body could not be read.".into())
            }
        })?;
        parse(&bytes).map(Json)
    }
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 5
            && essence[..essence.len() - 5].contains('/')
            && essence.ends_with("+json"))
}

/// The path of the first string holding a NUL character, which no text
/// column can store. JSON writes NUL only as the escape `\u0000`, so bodies
/// without it are not walked.
fn nul_field(bytes: &[u8]) -> Option<String> {
    if !bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000")) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    find_nul(&value, "")
}

fn find_nul(value: &serde_json::Value, path: &str) -> Option<String> {
    let under = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    match value {
        serde_json::Value::String(text) if text.contains('\0') => Some(if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        }),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(at, item)| find_nul(item, &format!("{path}[{at}]"))),
        serde_json::Value::Object(members) => members.iter().find_map(|(name, member)| {
            if name.contains('\0') {
                Some(under(&name.replace('\0', "\\u0000")))
            } else {
                find_nul(member, &under(name))
            }
        }),
        _ => None,
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Some(field) = nul_field(bytes) {
        return Err(ApiError::Validation(vec![FieldError::new(
            field,
            "must not contain the NUL character",
        )]));
    }
    match parse_exact(bytes) {
        // JSON (and the OpenAPI document's `integer`) counts `283.0` as the
        // integer 283; serde does not. Only such a body pays a second pass.
        Err(ApiError::Validation(errors))
            if errors
                .iter()
                .any(|e| e.message.starts_with("invalid type: floating point")) =>
        {
            let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
                return Err(ApiError::Validation(errors));
            };
            if integral_floats_as_integers(&mut value) {
                parse_exact(&serde_json::to_vec(&value).unwrap_or_default())
            } else {
                Err(ApiError::Validation(errors))
            }
        }
        other => other,
    }
}

/// Rewrites numbers such as `283.0` as `283`; whether any was rewritten.
fn integral_floats_as_integers(value: &mut serde_json::Value) -> bool {
    match value {
        serde_json::Value::Number(number) if number.is_f64() => {
            let float = number.as_f64().unwrap_or(f64::NAN);
            // i64's range, exactly representable bounds.
            if float.fract() == 0.0
                && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&float)
            {
                *value = serde_json::Value::from(float as i64);
                true
            } else {
                false
            }
        }
        serde_json::Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, item| integral_floats_as_integers(item) | any),
        serde_json::Value::Object(members) => members.values_mut().fold(false, |any, member| {
            integral_floats_as_integers(member) | any
        }),
        _ => false,
    }
}

fn parse_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            Category::Data => ApiError::Validation(vec![field_error(&path, &inner)]),
            Category::Syntax | Category::Eof => ApiError::MalformedJson(inner.to_string()),
            Category::Io => ApiError::BadRequest(inner.to_string()),
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok(value)
}

/// serde reports a missing field at its parent's path; name the field
/// itself. (An unknown field's path already ends with its name.)
fn field_error(path: &str, error: &serde_json::Error) -> FieldError {
    let message = strip_position(&error.to_string());
    let under = |name: &str| {
        if path == "." {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    if let Some(name) = quoted_after(&message, "missing field `") {
        return FieldError::new(under(name), "is required");
    }
    let field = if path == "." {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    if message.starts_with("unknown field ``") {
        // A member whose name is the empty string: its path names nothing.
        let parent = field.strip_suffix('.').unwrap_or(&field);
        let parent = if parent.is_empty() { "body" } else { parent };
        return FieldError::new(
            parent,
            "has a member with an empty name, which is not a known field",
        );
    }
    if message.starts_with("unknown field `") {
        return FieldError::new(field, "is not a known field");
    }
    FieldError::new(field, message)
}

fn quoted_after<'a>(message: &'a str, opening: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(opening)?;
    rest.split('`').next()
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        role: super::super::api_keys::RoleBody,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    fn field_of(body: &str) -> Vec<FieldError> {
        match parse::<Body>(body.as_bytes()) {
            Err(ApiError::Validation(errors)) => errors,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn an_integral_float_is_an_integer() {
        let parsed = parse::<Body>(br#"{"role":"admin","inner":{"count":7.0}}"#);
        assert_eq!(parsed.ok().and_then(|b| b.inner).map(|i| i.count), Some(7));
        assert!(matches!(
            parse::<Body>(br#"{"role":"admin","inner":{"count":7.5}}"#),
            Err(ApiError::Validation(_))
        ));
    }

    #[test]
    fn a_missing_field_is_named() {
        let errors = field_of("{}");
        assert_eq!(errors[0].field, "role");
        assert_eq!(errors[0].message, "is required");
    }

    #[test]
    fn a_wrong_value_is_named_by_its_path() {
        assert_eq!(field_of(r#"{"role":"root"}"#)[0].field, "role");
        let nested = field_of(r#"{"role":"admin","inner":{"count":-1}}"#);
        assert_eq!(nested[0].field, "inner.count");
        assert!(!nested[0].message.contains("line"));
    }

    #[test]
    fn broken_syntax_and_trailing_bytes_are_malformed_json() {
        assert!(matches!(
            parse::<Body>(b"{\"role\":"),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse::<Body>(br#"{"role":"admin"} x"#),
            Err(ApiError::MalformedJson(_))
        ));
    }

    #[test]
    fn json_content_types_are_recognised() {
        let mut headers = axum::http::HeaderMap::new();
        assert!(!is_json(&headers));
        for (value, expected) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("+json", false),
        ] {
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(is_json(&headers), expected, "{value}");
        }
    }
}
