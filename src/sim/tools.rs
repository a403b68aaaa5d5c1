//! What a response's hosted tools make besides search ([`Artifacts`]): the images of an
//! `image_generation` tool (`images.rs`), the run of a `code_interpreter` tool, with its
//! container and files (`code_interpreter.rs`, `containers.rs`), and the listings and calls
//! of remote MCP servers (`mcp.rs`); and how they show in the response: their output items,
//! before the message, and the answer's image captions, `container_file_citation`s and what
//! the MCP servers said. Function calls (`functions.rs`) and what the earlier turns left
//! (`chain.rs`) travel here too: they shape the output the same way.

use rand::Rng;
use serde_json::Value;

use super::chain::Context;
use super::code_interpreter::{Analysis, CodeRun};
use super::containers::RunFaults;
use super::error::ApiError;
use super::faults::{Faults, roll};
use super::files::Storage;
use super::functions::{self, Functions};
use super::images::{self, ImageTool, PlannedImage};
use super::mcp::{self, McpFaults, McpServer};
use super::output::{Step, topic_of, web_searches};
use super::validate::CreateRequest;

/// Images made when no `images=N` / `SIM_IMAGE_COUNT=N` says otherwise.
const DEFAULT_IMAGES: usize = 1;
/// Files a code run saves when no `container_files=N` / `SIM_CONTAINER_FILES=N` says otherwise.
const DEFAULT_CONTAINER_FILES: usize = 2;

/// What a response's hosted tools made.
#[derive(Debug, Clone, Default)]
pub(crate) struct Artifacts {
    pub image_tool: Option<ImageTool>,
    pub images: Vec<PlannedImage>,
    pub code: Option<CodeRun>,
    /// The MCP servers used unattended, with their calls.
    pub mcp: Vec<McpServer>,
    /// The function calls made and the outputs answered.
    pub functions: Functions,
    /// What the earlier turns (chain or conversation) left.
    pub context: Context,
}

impl Artifacts {
    /// Runs the create's hosted tools: draws its images, runs its code, saving the files in a
    /// container of `storage` and deciding the container faults, and calls its MCP servers
    /// (within what `max_tool_calls` leaves after the web searches). A container the tool
    /// names that is unknown or expired is a 400, answered before anything is made.
    pub(crate) fn make(
        req: &CreateRequest,
        response_id: &str,
        storage: &mut Storage,
        faults: &Faults,
        context: &Context,
        rng: &mut impl Rng,
    ) -> Result<Self, ApiError> {
        functions::check_choice(req)?;
        let answered = functions::check_outputs(req, context)?;
        let topic = topic_of(&req.input_text);
        let code = match &req.code_tool {
            Some(tool) => {
                let o = &req.overrides;
                let files = o.container_files.unwrap_or(DEFAULT_CONTAINER_FILES);
                let analysis = Analysis::of(&req.input_text, &topic, files);
                let run_faults = RunFaults {
                    expired: o.container_expired || roll(rng, faults.container_expired),
                    drop_first_download: analysis
                        .files
                        .iter()
                        .map(|_| o.container_file_drop || roll(rng, faults.container_file_drop))
                        .collect(),
                };
                Some(storage.run_code(tool, response_id, analysis, &run_faults)?)
            }
            None => None,
        };
        let images = req
            .image_tool
            .as_ref()
            .map(|tool| {
                let count = req.overrides.images.unwrap_or(DEFAULT_IMAGES);
                images::plan(tool, count, &req.input_text, &topic)
            })
            .unwrap_or_default();
        let mcp_faults = McpFaults {
            list_error: req.overrides.mcp_list_error,
            call_error: req.overrides.mcp_error,
        };
        let budget = req.max_tool_calls().saturating_sub(web_searches(req));
        let approvals = mcp::approvals(&req.input_items, context)?;
        let mcp = mcp::plan(&req.tools, &topic, mcp_faults, budget, &approvals);
        Ok(Self {
            image_tool: req.image_tool.clone(),
            images,
            code,
            mcp,
            functions: functions::plan(req, context, answered),
            context: context.clone(),
        })
    }

    /// Whether the response ends waiting for the client (function calls to run, an MCP call
    /// to approve) instead of answering: it then has no message.
    pub(crate) fn awaits_client(&self) -> bool {
        !self.functions.calls.is_empty() || mcp::awaits_approval(&self.mcp)
    }

    /// What the answer says before its summary: the earlier turns and the function outputs.
    pub(crate) fn context_text(&self, text: &mut String) {
        text.push_str(&self.context.earlier_text());
        self.functions.append_text(text);
    }

    /// Appends to the answer what the MCP servers said, the files the code saved (cited) and
    /// a caption per image.
    pub(crate) fn append_text(&self, text: &mut String, annotations: &mut Vec<Value>) {
        mcp::append_text(text, &self.mcp);
        if let Some(run) = &self.code {
            run.append_citations(text, annotations);
        }
        images::append_captions(text, &self.images);
    }

    /// Adds the MCP servers' `mcp_list_tools` items to the planned output (first: the tools
    /// are listed before the model runs).
    pub(crate) fn list_steps(&self, steps: &mut Vec<Step>, done: &mut Vec<Value>) {
        mcp::list_steps(steps, done, &self.mcp);
    }

    /// Adds the tool items to the planned output: the `mcp_call`s, the
    /// `code_interpreter_call`, then one `image_generation_call` per image.
    pub(crate) fn steps(
        &self,
        steps: &mut Vec<Step>,
        done: &mut Vec<Value>,
        include: &[String],
        obfuscate: bool,
        rng: &mut impl Rng,
    ) {
        mcp::call_steps(steps, done, &self.mcp, obfuscate, rng);
        if let Some(run) = &self.code {
            let outputs = include.iter().any(|i| i == "code_interpreter_call.outputs");
            run.steps(steps, done, outputs, obfuscate, rng);
        }
        if let Some(tool) = &self.image_tool {
            images::steps(steps, done, tool, &self.images);
        }
        self.functions.steps(steps, done, obfuscate, rng);
    }

    /// The characters the model wrote for the tools (the code, the MCP calls' arguments),
    /// for usage.
    pub(crate) fn written_chars(&self) -> usize {
        self.code.as_ref().map_or(0, |run| run.code.chars().count())
            + mcp::written_chars(&self.mcp)
            + self.functions.written_chars()
    }
}
