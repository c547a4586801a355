//! The finishing pass over the OpenAPI document generated from the
//! handlers: the failures every operation shares (authentication, roles,
//! body parsing, path and query parsing, deadlines) are attached here, once,
//! from what the operation declares, so no route lists them by hand and none
//! can forget one. Each failure status is a shared response whose schema
//! names the problem `type`s offergate answers with that status.

use serde_json::{Map, Value, json};

/// Problem `type`s by status, as `problem.rs` and the handlers produce them.
const PROBLEM_TYPES: &[(u16, &str, &[&str])] = &[
    (
        400,
        "The request could not be read: broken JSON, a malformed path \
         parameter, or a NUL character in the path.",
        &["bad_request", "malformed_json"],
    ),
    (
        401,
        "No API key, an unknown or revoked one; or, where a token is \
         presented, a token that is not valid.",
        &["unauthorized", "invalid_token"],
    ),
    (
        403,
        "The key's role may not call this operation, or the consumer is not \
         eligible.",
        &["forbidden", "not_eligible"],
    ),
    (
        404,
        "Nothing of that id is visible to this key.",
        &["not_found"],
    ),
    (
        409,
        "The resource's state forbids the change.",
        &[
            "community_exists",
            "community_in_use",
            "offer_exhausted",
            "person_limit_reached",
            "already_redeemed",
            "token_revoked",
            "token_not_revocable",
            "already_reversed",
            "already_confirmed",
            "redemption_reversed",
            "session_closed",
        ],
    ),
    (410, "The token has expired.", &["token_expired"]),
    (
        413,
        "The request body exceeds the size limit.",
        &["payload_too_large"],
    ),
    (
        415,
        "The body's Content-Type is not accepted here.",
        &["unsupported_media_type"],
    ),
    (
        422,
        "Fields at fault (each named in `errors`), an Idempotency-Key reused \
         with another body, or rejected import rows.",
        &[
            "validation_failed",
            "idempotency_key_reused",
            "import_rejected",
        ],
    ),
    (
        429,
        "Too many failed attempts; `Retry-After` says when to retry.",
        &["rate_limited"],
    ),
    (
        503,
        "The database is unreachable or busy, or the request passed its \
         deadline; retry shortly.",
        &["unavailable", "timeout"],
    ),
];

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Completes `doc` in place; see the module comment.
pub fn finish(doc: &mut Value) {
    add_problem_responses(doc);
    constrain(doc);
    refuse_nul_where_json_or_url(doc);
    let links = links();
    let Some(Value::Object(paths)) = doc.get_mut("paths") else {
        return;
    };
    for item in paths.values_mut() {
        for method in METHODS {
            if let Some(Value::Object(op)) = item.get_mut(method) {
                finish_operation(method, op);
                add_links(op, &links);
            }
        }
    }
}

fn response_name(status: u16) -> String {
    format!("Problem{status}")
}

fn add_problem_responses(doc: &mut Value) {
    let Some(components) = doc
        .as_object_mut()
        .map(|d| d.entry("components").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let responses = components
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    let Some(responses) = responses else { return };
    for (status, description, types) in PROBLEM_TYPES {
        let mut response = json!({
            "description": description,
            "content": {
                super::problem::PROBLEM_JSON: {
                    "schema": {
                        "allOf": [
                            { "$ref": "#/components/schemas/Problem" },
                            {
                                "type": "object",
                                "properties": {
                                    "type": { "type": "string", "enum": types },
                                    "status": { "type": "integer", "const": status },
                                },
                            },
                        ],
                    },
                },
            },
        });
        if *status == 503 {
            response["headers"] = json!({
                "Retry-After": {
                    "description": "Seconds to wait before retrying, when known.",
                    "schema": { "type": "integer", "minimum": 0 },
                },
            });
        }
        if *status == 429 {
            response["headers"] = json!({
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "required": true,
                    "schema": { "type": "integer", "minimum": 0 },
                },
            });
        }
        responses.insert(response_name(*status), response);
    }
}

fn finish_operation(method: &str, op: &mut Map<String, Value>) {
    // Operation ids must be unique in the document; handlers of different
    // resources share names (`list`, `create`), so the tag leads.
    let tag = op
        .get("tags")
        .and_then(|t| t.get(0))
        .and_then(Value::as_str)
        .unwrap_or("")
        .replace('-', "_");
    let id = op
        .get("operationId")
        .and_then(Value::as_str)
        .unwrap_or(method)
        .to_owned();
    if !tag.is_empty() && !id.starts_with(&format!("{tag}_")) {
        op.insert("operationId".into(), format!("{tag}_{id}").into());
    }

    let secured = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    let params = op
        .get("parameters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let has_in = |place: &str| params.iter().any(|p| p["in"] == place);
    if let Some(Value::Array(declared)) = op.get_mut("parameters") {
        for param in declared.iter_mut() {
            if param["in"] == "header" && param["name"] == "Idempotency-Key" {
                // Visible ASCII, some of it not blank, as `IdempotencyKey::parse` takes it.
                param["schema"] = json!({
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 200,
                    "pattern": "^[ -~]*[!-~][ -~]*$",
                });
            }
        }
    }
    let json_body = op
        .get("requestBody")
        .and_then(|b| b.get("content"))
        .and_then(Value::as_object)
        .is_some_and(|c| c.keys().any(|k| k.ends_with("json")));
    let any_body = op.contains_key("requestBody");

    let mut statuses: Vec<u16> = vec![503];
    if secured {
        statuses.extend([401, 403]);
    }
    if has_in("path") {
        statuses.extend([400, 404]);
    }
    if has_in("query") {
        statuses.extend([400, 422]);
    }
    if any_body {
        statuses.extend([413, 415]);
    }
    if json_body {
        statuses.extend([400, 422]);
    }
    if has_in("path") && any_body {
        statuses.push(400);
    }

    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    // Every response object needs a description.
    for (status, response) in responses.iter_mut() {
        if let Some(response) = response.as_object_mut()
            && !response.contains_key("$ref")
            && response
                .get("description")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            let reason = status
                .parse::<u16>()
                .ok()
                .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Success");
            response.insert("description".into(), reason.into());
        }
    }
    for (status, _, _) in PROBLEM_TYPES {
        let key = status.to_string();
        let declared = responses.get(&key);
        if declared.is_none() && !statuses.contains(status) {
            continue;
        }
        let description = declared
            .and_then(|r| r.get("description"))
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .map(str::to_owned);
        let mut reference =
            json!({ "$ref": format!("#/components/responses/{}", response_name(*status)) });
        if let Some(description) = description {
            reference["description"] = description.into();
        }
        responses.insert(key, reference);
    }
}

/// Rules the server enforces across fields of a body, which the derives
/// cannot state: merged into the named properties of component schemas.
fn constrain(doc: &mut Value) {
    let whole_rule = |fields: &[&str]| json!({ "allOf": fields.iter().map(|f| json!({ "contains": { "const": f } })).collect::<Vec<_>>() });
    let required_fields = json!({
        "description": "Identity fields a verification must carry: a whole match rule (email; \
                        or given_name, family_name and birth_date; or license_number and \
                        family_name).",
        "anyOf": [
            whole_rule(&["email"]),
            whole_rule(&["given_name", "family_name", "birth_date"]),
            whole_rule(&["license_number", "family_name"]),
        ],
    });
    let subsegment_reverify = json!({
        "description": "Per sub-status overrides of `reverify_after_days` (null: until the \
                        record ends); each key must be one of the community's `subsegments`.",
        "propertyNames": { "pattern": "^[a-z][a-z0-9_]{1,62}$" },
        "additionalProperties": { "type": ["integer", "null"], "minimum": 1, "maximum": 36500 },
    });
    let has_text = |field: &str| json!({ "required": [field], "properties": { field: { "type": "string", "pattern": "^[^\\x00]*[^\\W_][^\\x00]*$" } } });
    // Text fields count only with a letter or digit; blank is absent.
    let identity_text =
        json!({ "maxLength": 320, "pattern": "^(?:\\s*|[^\\x00]*[^\\W_][^\\x00]*)$" });
    let patches = [
        (
            "CreateCommunity",
            "required_fields",
            required_fields.clone(),
        ),
        ("ChangeCommunity", "required_fields", required_fields),
        (
            "CreateCommunity",
            "subsegment_reverify",
            subsegment_reverify.clone(),
        ),
        (
            "ChangeCommunity",
            "subsegment_reverify",
            subsegment_reverify,
        ),
        ("RawIdentity", "given_name", identity_text.clone()),
        ("RawIdentity", "family_name", identity_text.clone()),
        ("RawIdentity", "organization", identity_text.clone()),
        ("RawIdentity", "license_number", identity_text),
        (
            "RawIdentity",
            "email",
            json!({ "maxLength": 320, "anyOf": [
                { "type": "null" }, { "pattern": "^\\s*$" }, { "format": "email" },
            ] }),
        ),
        (
            "RawIdentity",
            "birth_date",
            json!({ "anyOf": [
                { "type": "null" }, { "pattern": "^\\s*$" }, { "format": "date" },
            ] }),
        ),
        (
            "EraseRequest",
            "person",
            json!({ "anyOf": [
                has_text("email"),
                { "allOf": [has_text("given_name"), has_text("family_name"),
                    { "required": ["birth_date"], "properties": { "birth_date": { "type": "string", "format": "date" } } }] },
                { "allOf": [has_text("license_number"), has_text("family_name")] },
            ] }),
        ),
    ];
    // Partner keys, and only they, are bound to a partner.
    if let Some(Value::Object(create_key)) = doc.pointer_mut("/components/schemas/CreateKey") {
        create_key.insert(
            "if".into(),
            json!({ "properties": { "role": { "const": "partner" } }, "required": ["role"] }),
        );
        create_key.insert(
            "then".into(),
            json!({ "properties": { "partner_id": { "type": "string", "format": "uuid" } }, "required": ["partner_id"] }),
        );
        create_key.insert(
            "else".into(),
            json!({ "properties": { "partner_id": { "type": "null" } } }),
        );
    }
    for (schema, property, patch) in patches {
        let pointer = format!("/components/schemas/{schema}/properties/{property}");
        if let Some(Value::Object(target)) = doc.pointer_mut(&pointer)
            && let Value::Object(patch) = patch
        {
            // A `$ref` may have no siblings that constrain it in every
            // tool: wrap it so the patch applies beside it.
            if let Some(reference) = target.remove("$ref") {
                target.insert("allOf".into(), json!([{ "$ref": reference }]));
            }
            target.extend(patch);
        }
    }
}

/// What a created resource leads to: (operation, status, link name,
/// target operation, target path parameter, member of the answer).
const LINKS: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "offers_create",
        "201",
        "GetOffer",
        "offers_show",
        "id",
        "id",
    ),
    (
        "offers_create",
        "201",
        "ChangeOffer",
        "offers_change",
        "id",
        "id",
    ),
    (
        "offers_create",
        "201",
        "OfferStats",
        "offers_offer_stats",
        "id",
        "id",
    ),
    (
        "communities_create",
        "201",
        "GetCommunity",
        "communities_show",
        "key",
        "key",
    ),
    (
        "communities_create",
        "201",
        "ChangeCommunity",
        "communities_change",
        "key",
        "key",
    ),
    (
        "communities_create",
        "201",
        "DeleteCommunity",
        "communities_remove",
        "key",
        "key",
    ),
    (
        "api_keys_create",
        "201",
        "RevokeKey",
        "api_keys_revoke",
        "id",
        "id",
    ),
    (
        "redemptions_redeem",
        "201",
        "GetRedemption",
        "redemptions_show",
        "id",
        "id",
    ),
    (
        "redemptions_redeem",
        "201",
        "ReverseRedemption",
        "redemptions_reverse",
        "id",
        "id",
    ),
    (
        "redemptions_redeem",
        "201",
        "ConfirmRedemption",
        "redemptions_confirm",
        "id",
        "id",
    ),
    (
        "tokens_issue",
        "201",
        "RevokeToken",
        "tokens_revoke",
        "id",
        "token_id",
    ),
];

fn links() -> Vec<(String, String, String, Value)> {
    LINKS
        .iter()
        .map(|(from, status, name, to, parameter, member)| {
            (
                (*from).to_owned(),
                (*status).to_owned(),
                (*name).to_owned(),
                json!({
                    "operationId": to,
                    "parameters": { *parameter: format!("$response.body#/{member}") },
                }),
            )
        })
        .collect()
}

fn add_links(op: &mut Map<String, Value>, links: &[(String, String, String, Value)]) {
    let Some(id) = op
        .get("operationId")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return;
    };
    for (from, status, name, link) in links {
        if *from != id {
            continue;
        }
        if let Some(Value::Object(response)) = op
            .get_mut("responses")
            .and_then(|r| r.get_mut(status.as_str()))
        {
            let all = response.entry("links").or_insert_with(|| json!({}));
            all[name.as_str()] = link.clone();
        }
    }
}

/// No text column can store a NUL character and offergate refuses one in
/// any string it is sent: every free-text string says so.
const NO_NUL: &str = "^[^\\x00]*$";

/// The pattern offergate's "not blank" fields (`pattern = r"\S"` on the
/// field) are held to: some non-space character, and no NUL.
const NOT_BLANK_NO_NUL: &str = "^[^\\x00]*[^\\s\\x00][^\\x00]*$";

const ECHO_INPUT: [&str; 4] = ["Problem", "FieldError", "ImportReport", "RejectedRow"];

/// Schemas, parameters and JSON bodies; a CSV or NDJSON file is a file.
fn refuse_nul_where_json_or_url(doc: &mut Value) {
    if let Some(Value::Object(schemas)) = doc.pointer_mut("/components/schemas") {
        for (name, schema) in schemas.iter_mut() {
            // Problems and import reports quote what they were sent, NUL included.
            if !ECHO_INPUT.contains(&name.as_str()) {
                refuse_nul(schema);
            }
        }
    }
    let Some(Value::Object(paths)) = doc.get_mut("paths") else {
        return;
    };
    for item in paths.values_mut() {
        for method in METHODS {
            let Some(op) = item.get_mut(method) else {
                continue;
            };
            if let Some(params) = op.get_mut("parameters") {
                refuse_nul(params);
            }
            if let Some(Value::Object(content)) = op.pointer_mut("/requestBody/content") {
                for (media_type, media) in content.iter_mut() {
                    if media_type.ends_with("json") {
                        refuse_nul(media);
                    }
                }
            }
        }
    }
}

fn refuse_nul(value: &mut Value) {
    match value {
        Value::Object(members) => {
            let is_string = match members.get("type") {
                Some(Value::String(kind)) => kind == "string",
                Some(Value::Array(kinds)) => kinds.iter().any(|k| k == "string"),
                _ => false,
            };
            if is_string && !members.contains_key("format") && !members.contains_key("enum") {
                match members.get("pattern").and_then(Value::as_str) {
                    None => {
                        members.insert("pattern".into(), NO_NUL.into());
                    }
                    Some("\\S") => {
                        members.insert("pattern".into(), NOT_BLANK_NO_NUL.into());
                    }
                    Some(_) => {}
                }
            }
            members.values_mut().for_each(refuse_nul);
        }
        Value::Array(items) => items.iter_mut().for_each(refuse_nul),
        _ => {}
    }
}
