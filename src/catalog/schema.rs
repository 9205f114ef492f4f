//! A tool's input schema as a compiled validator: arguments are checked
//! before any upstream call, so a malformed call costs no round trip.

use rmcp::model::JsonObject;
use serde_json::Value;

/// At most this many problems are named in one refusal.
const MAX_PROBLEMS: usize = 5;

/// A compiled input schema, or why it cannot be compiled (then arguments
/// are not checked here and the upstream judges them: a server's odd
/// schema must not make its tool uncallable).
pub enum InputCheck {
    Compiled(Box<jsonschema::Validator>),
    Unusable(String),
}

impl InputCheck {
    pub fn compile(schema: &JsonObject) -> Self {
        match jsonschema::validator_for(&Value::Object(schema.clone())) {
            Ok(v) => InputCheck::Compiled(Box::new(v)),
            Err(e) => InputCheck::Unusable(e.to_string()),
        }
    }

    /// `Err` names each problem with where it is (`/message: 5 is not of type "string"`).
    pub fn check(&self, arguments: Option<&JsonObject>) -> Result<(), String> {
        let InputCheck::Compiled(validator) = self else {
            return Ok(());
        };
        let instance = Value::Object(arguments.cloned().unwrap_or_default());
        let problems: Vec<String> = validator
            .iter_errors(&instance)
            .take(MAX_PROBLEMS)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> JsonObject {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn echo_schema() -> JsonObject {
        object(
            json!({"type": "object", "properties": {"message": {"type": "string"}},
                      "required": ["message"]}),
        )
    }

    #[test]
    fn valid_arguments_pass() {
        let check = InputCheck::compile(&echo_schema());
        assert!(check.check(Some(&object(json!({"message": "hi"})))).is_ok());
    }

    #[test]
    fn a_wrong_type_is_named_with_its_path() {
        let check = InputCheck::compile(&echo_schema());
        let e = check
            .check(Some(&object(json!({"message": 5}))))
            .unwrap_err();
        assert!(e.contains("/message"), "{e}");
        assert!(e.contains("string"), "{e}");
    }

    #[test]
    fn missing_required_arguments_are_refused_also_without_arguments() {
        let check = InputCheck::compile(&echo_schema());
        let e = check.check(None).unwrap_err();
        assert!(e.contains("message"), "{e}");
    }

    #[test]
    fn an_unusable_schema_leaves_the_judgement_to_the_server() {
        let check = InputCheck::compile(&object(json!({"type": 12})));
        assert!(matches!(check, InputCheck::Unusable(_)));
        assert!(check.check(Some(&object(json!({"x": 1})))).is_ok());
    }
}
