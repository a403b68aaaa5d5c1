//! What a response's hosted tools make besides search ([`Artifacts`]): the images of an
//! `image_generation` tool (`images.rs`); and how they show in the response: their output
//! items, before the message, and the answer's image captions.

use serde_json::Value;

use super::images::{self, ImageTool, PlannedImage};
use super::output::{Step, topic_of};
use super::validate::CreateRequest;

/// Images made when no `images=N` / `SIM_IMAGE_COUNT=N` says otherwise.
const DEFAULT_IMAGES: usize = 1;

/// What a response's hosted tools made.
#[derive(Debug, Clone, Default)]
pub(crate) struct Artifacts {
    pub image_tool: Option<ImageTool>,
    pub images: Vec<PlannedImage>,
}

impl Artifacts {
    /// Runs the create's hosted tools: draws its images.
    pub(crate) fn make(req: &CreateRequest) -> Self {
        let topic = topic_of(&req.input_text);
        let images = req
            .image_tool
            .as_ref()
            .map(|tool| {
                let count = req.overrides.images.unwrap_or(DEFAULT_IMAGES);
                images::plan(tool, count, &req.input_text, &topic)
            })
            .unwrap_or_default();
        Self {
            image_tool: req.image_tool.clone(),
            images,
        }
    }

    /// Appends to the answer a caption per image.
    pub(crate) fn append_text(&self, text: &mut String, _annotations: &mut Vec<Value>) {
        images::append_captions(text, &self.images);
    }

    /// Adds the tool items to the planned output: one `image_generation_call` per image.
    pub(crate) fn steps(&self, steps: &mut Vec<Step>, done: &mut Vec<Value>) {
        if let Some(tool) = &self.image_tool {
            images::steps(steps, done, tool, &self.images);
        }
    }
}
