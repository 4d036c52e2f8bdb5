//! Models as `models.list` and `models.get` describe them.

use serde::{Deserialize, Serialize};

/// A Gemini model (the API's `Model` resource). Fields Google may omit are optional.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Model {
    /// Resource name, `models/{id}`, e.g. `models/gemini-2.5-flash`.
    pub name: String,
    /// The base model's id, e.g. `gemini-2.5-flash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model_id: Option<String>,
    /// Version of the model, e.g. `001`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Human-readable name, e.g. `Gemini 2.5 Flash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// A sentence or two about the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Most tokens the model accepts as input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_token_limit: Option<u64>,
    /// Most tokens the model produces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_token_limit: Option<u64>,
    /// API methods the model serves, e.g. `generateContent`, `countTokens`, `embedContent`.
    #[serde(default)]
    pub supported_generation_methods: Vec<String>,
    /// Default sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Highest temperature allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_temperature: Option<f64>,
    /// Default nucleus sampling probability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Default top-k sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Whether the model thinks before answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<bool>,
}

impl Model {
    /// The model id without the `models/` prefix, as it goes into a request path.
    #[must_use]
    pub fn id(&self) -> &str {
        self.name.strip_prefix("models/").unwrap_or(&self.name)
    }

    /// Whether the model serves `method` (e.g. `generateContent`).
    #[must_use]
    pub fn supports(&self, method: &str) -> bool {
        self.supported_generation_methods
            .iter()
            .any(|supported| supported == method)
    }
}

/// One page of `models.list`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelPage {
    /// The models on this page.
    pub models: Vec<Model>,
    /// Token for the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// `models.list` as it travels.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListModelsResponse {
    #[serde(default)]
    models: Vec<Model>,
    #[serde(default)]
    next_page_token: Option<String>,
}

impl From<ListModelsResponse> for ModelPage {
    fn from(wire: ListModelsResponse) -> Self {
        Self {
            models: wire.models,
            // Google omits the field on the last page; an empty string means the same.
            next_page_token: wire.next_page_token.filter(|token| !token.is_empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use assistd_testkit::gemini::bodies;

    use super::*;

    #[test]
    fn decodes_the_list_example() {
        let wire: ListModelsResponse = serde_json::from_str(bodies::MODELS_LIST).unwrap();
        let page = ModelPage::from(wire);
        assert_eq!(
            page.next_page_token.as_deref(),
            Some("Chdtb2RlbHMvZ2VtaW5pLTIuNS1mbGFzaA==")
        );
        assert_eq!(page.models.len(), 2);
        let flash = &page.models[0];
        assert_eq!(flash.id(), "gemini-2.5-flash");
        assert_eq!(flash.display_name.as_deref(), Some("Gemini 2.5 Flash"));
        assert_eq!(flash.input_token_limit, Some(1_048_576));
        assert_eq!(flash.output_token_limit, Some(65_536));
        assert!(flash.supports("generateContent"));
        assert_eq!(flash.thinking, Some(true));
        let embedding = &page.models[1];
        assert_eq!(embedding.base_model_id, None);
        assert!(!embedding.supports("generateContent"));
        assert!(embedding.supports("embedContent"));
    }

    #[test]
    fn decodes_the_get_example_and_a_last_page() {
        let model: Model = serde_json::from_str(bodies::MODELS_GET).unwrap();
        assert_eq!(model.name, "models/gemini-2.5-flash");
        assert_eq!(model.version.as_deref(), Some("001"));
        assert_eq!(model.top_k, Some(64));

        let last: ListModelsResponse =
            serde_json::from_str(r#"{"models": [], "nextPageToken": ""}"#).unwrap();
        assert_eq!(ModelPage::from(last).next_page_token, None);
        let empty: ListModelsResponse = serde_json::from_str("{}").unwrap();
        assert!(ModelPage::from(empty).models.is_empty());
    }
}
