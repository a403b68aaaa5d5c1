//! Image generation (`docs/upstream-api.md` §1.5, §2.5 "image gen"): the `image_generation`
//! tool's options ([`ImageTool`]), the images a response makes ([`PlannedImage`], real PNGs
//! drawn from the input text, so the same input gives the same bytes), their
//! `image_generation_call` items with the stream events of each step, and the bar chart the
//! code interpreter saves ([`bar_chart_png`]).
//!
//! Every image is a PNG, whatever `output_format` asked for (the item then says `png`), and
//! smaller than its `size` says: an eighth of each side (`1024x1024` is 128×128 pixels), which
//! keeps responses that hold several images in memory cheap. A transparent `background` gives
//! an RGBA image whose corners are clear.

use base64::Engine;
use serde_json::{Value, json};

use super::output::{Step, ev};

/// The `image_generation` tool of a create, with `auto` and absent options resolved to what
/// the item reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageTool {
    /// `WIDTHxHEIGHT`; `auto` and absent: `1024x1024`.
    pub size: String,
    /// `low`, `medium` or `high`; `auto` and absent: `medium`.
    pub quality: String,
    /// `opaque` or `transparent`; `auto` and absent: `opaque`.
    pub background: String,
    /// Partial images streamed before the final one (0–3).
    pub partial_images: usize,
}

/// A string option of a tool, or `default` when it is absent, not a string or `auto`.
fn option(tool: &Value, key: &str, default: &str) -> String {
    match tool.get(key).and_then(Value::as_str) {
        Some(v) if v != "auto" => v.to_owned(),
        _ => default.to_owned(),
    }
}

impl ImageTool {
    /// The first `image_generation` tool of `tools`. Lenient: the create's schema check
    /// refuses wrong types and values (`partial_images` over 3, an unknown `output_format`).
    pub(crate) fn parse(tools: &[Value]) -> Option<Self> {
        let tool = tools
            .iter()
            .find(|t| t.get("type").and_then(Value::as_str) == Some("image_generation"))?;
        let partial_images = tool
            .get("partial_images")
            .and_then(Value::as_u64)
            .map_or(0, |n| usize::try_from(n.min(3)).unwrap_or(0));
        Some(Self {
            size: option(tool, "size", "1024x1024"),
            quality: option(tool, "quality", "medium"),
            background: option(tool, "background", "opaque"),
            partial_images,
        })
    }

    /// The pixel size of the images: an eighth of `size`, each side within 16–256.
    fn pixels(&self) -> (u32, u32) {
        let parsed = self
            .size
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)));
        let (w, h) = parsed.unwrap_or((1024, 1024));
        ((w / 8).clamp(16, 256), (h / 8).clamp(16, 256))
    }
}

/// One image a response makes.
#[derive(Debug, Clone)]
pub(crate) struct PlannedImage {
    /// `ig_…`.
    pub id: String,
    pub revised_prompt: String,
    /// The PNG, base64.
    pub result: String,
    /// The partial images streamed before it, base64 PNGs, coarsest first.
    pub partials: Vec<String>,
}

fn fnv(text: &str, salt: u64) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325 ^ salt, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Encodes 8-bit RGB (or RGBA) pixels as a PNG.
fn encode(
    width: u32,
    height: u32,
    alpha: bool,
    data: &[u8],
) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(if alpha {
        png::ColorType::Rgba
    } else {
        png::ColorType::Rgb
    });
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(data)?;
    writer.finish()?;
    Ok(out)
}

/// `encode`, or an empty image if the encoder refuses (it cannot for the sizes used here).
fn encode_or_log(width: u32, height: u32, alpha: bool, data: &[u8]) -> Vec<u8> {
    encode(width, height, alpha, data).unwrap_or_else(|err| {
        tracing::error!(error = %err, "cannot encode a generated PNG");
        Vec::new()
    })
}

/// A picture drawn from `seed`: a diagonal gradient, stripes and a disc. `block` > 1 draws it
/// in blocks of that many pixels (a partial image). With `alpha`, outside the disc the
/// corners are transparent.
fn picture(seed: u64, width: u32, height: u32, alpha: bool, block: u32) -> Vec<u8> {
    let channels = if alpha { 4 } else { 3 };
    let side = width.min(height);
    let cx = i64::from(width / 4 + (seed % u64::from(width / 2).max(1)) as u32);
    let cy = i64::from(height / 4 + ((seed >> 16) % u64::from(height / 2).max(1)) as u32);
    let radius = i64::from(side / 6 + ((seed >> 32) % u64::from(side / 6).max(1)) as u32);
    let tint = [(seed >> 8) as u8, (seed >> 24) as u8, (seed >> 40) as u8];
    let block = block.max(1);
    let mut data = Vec::with_capacity((width * height) as usize * channels);
    for y in 0..height {
        for x in 0..width {
            let (bx, by) = (x / block * block, y / block * block);
            let (dx, dy) = (i64::from(bx) - cx, i64::from(by) - cy);
            let inside = dx * dx + dy * dy <= radius * radius;
            let stripe = ((bx + by) / 12) % 2 == 0;
            let mut rgb = if inside {
                tint
            } else {
                [
                    (bx * 255 / width.max(2)) as u8,
                    (by * 255 / height.max(2)) as u8,
                    tint[2] / 2 + 64,
                ]
            };
            if stripe && !inside {
                rgb = rgb.map(|c| c / 4 * 3);
            }
            data.extend_from_slice(&rgb);
            if alpha {
                let (ex, ey) = (bx.min(width - 1 - bx), by.min(height - 1 - by));
                let corner = ex + ey < side / 4;
                data.push(if inside || !corner { 255 } else { 0 });
            }
        }
    }
    data
}

/// The images a response makes: `count` of them, drawn from the input text, each with the
/// partial images the tool asks for.
pub(crate) fn plan(
    tool: &ImageTool,
    count: usize,
    input_text: &str,
    topic: &str,
) -> Vec<PlannedImage> {
    let (width, height) = tool.pixels();
    let alpha = tool.background == "transparent";
    let b64 = |png: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(png);
    (0..count)
        .map(|k| {
            let seed = fnv(input_text, k as u64);
            let variation = if k == 0 {
                String::new()
            } else {
                format!(", variation {}", k + 1)
            };
            let partials = (0..tool.partial_images)
                .map(|p| {
                    // Coarsest first: blocks of 16, 8, 4 pixels for three partials.
                    let block = 1u32 << (tool.partial_images - p + 1).min(6);
                    b64(encode_or_log(
                        width,
                        height,
                        alpha,
                        &picture(seed, width, height, alpha, block),
                    ))
                })
                .collect();
            PlannedImage {
                id: super::ids::new("ig"),
                revised_prompt: format!("An illustration of {topic} in soft gradients{variation}"),
                result: b64(encode_or_log(
                    width,
                    height,
                    alpha,
                    &picture(seed, width, height, alpha, 1),
                )),
                partials,
            }
        })
        .collect()
}

/// A bar chart of `values` on white, `width`×`height` RGB pixels, as a PNG.
pub(crate) fn bar_chart_png(values: &[u64], width: u32, height: u32) -> Vec<u8> {
    let max = values.iter().copied().max().unwrap_or(1).max(1);
    let slots = u32::try_from(values.len()).unwrap_or(1).max(1);
    let slot = (width / slots).max(1);
    let mut data = vec![255u8; (width * height * 3) as usize];
    for y in 0..height {
        for x in 0..width {
            let i = (x / slot) as usize;
            let Some(value) = values.get(i) else {
                continue;
            };
            let bar = u32::try_from(u64::from(height.saturating_sub(8)) * value / max).unwrap_or(0);
            let in_bar = x % slot >= slot / 5 && x % slot < slot - slot / 5;
            let axis = y + 4 == height;
            let at = ((y * width + x) * 3) as usize;
            if axis {
                data[at..at + 3].copy_from_slice(&[40, 40, 40]);
            } else if in_bar && y + 4 < height && y + 4 + bar >= height {
                let shade = [31, 119, 180].map(|c: u8| c.saturating_add((i * 23 % 60) as u8));
                data[at..at + 3].copy_from_slice(&shade);
            }
        }
    }
    encode_or_log(width, height, false, &data)
}

impl PlannedImage {
    /// The `image_generation_call` item: `result` is set once it is `completed`.
    fn item(&self, tool: &ImageTool, status: &str) -> Value {
        let result = if status == "completed" {
            json!(self.result)
        } else {
            Value::Null
        };
        json!({
            "id": self.id,
            "type": "image_generation_call",
            "status": status,
            "result": result,
            "revised_prompt": self.revised_prompt,
            "size": tool.size,
            "quality": tool.quality,
            "output_format": "png",
            "background": tool.background,
        })
    }
}

/// Adds each image's three steps to the planned output: added and in progress; generating
/// (with its partial images); completed and done.
pub(crate) fn steps(
    steps: &mut Vec<Step>,
    done: &mut Vec<Value>,
    tool: &ImageTool,
    images: &[PlannedImage],
) {
    for image in images {
        let idx = done.len();
        let at = |extra: Value| {
            let mut fields = json!({"output_index": idx, "item_id": image.id});
            if let (Some(f), Value::Object(extra)) = (fields.as_object_mut(), extra) {
                f.extend(extra);
            }
            fields
        };
        let with = |item: Value| {
            let mut out = done.clone();
            out.push(item);
            out
        };
        let added = image.item(tool, "in_progress");
        steps.push(Step {
            events: vec![
                ev(
                    "response.output_item.added",
                    json!({"output_index": idx, "item": added}),
                ),
                ev("response.image_generation_call.in_progress", at(json!({}))),
            ],
            output: with(added.clone()),
        });
        let mut events = vec![ev(
            "response.image_generation_call.generating",
            at(json!({})),
        )];
        for (p, partial) in image.partials.iter().enumerate() {
            events.push(ev(
                "response.image_generation_call.partial_image",
                at(json!({
                    "partial_image_b64": partial,
                    "partial_image_index": p,
                    "size": tool.size,
                    "quality": tool.quality,
                    "background": tool.background,
                    "output_format": "png",
                })),
            ));
        }
        steps.push(Step {
            events,
            output: with(image.item(tool, "generating")),
        });
        let full = image.item(tool, "completed");
        steps.push(Step {
            events: vec![
                ev("response.image_generation_call.completed", at(json!({}))),
                ev(
                    "response.output_item.done",
                    json!({"output_index": idx, "item": full}),
                ),
            ],
            output: with(full.clone()),
        });
        done.push(full);
    }
}

/// Appends a caption per image to the answer (nothing without images).
pub(crate) fn append_captions(text: &mut String, images: &[PlannedImage]) {
    if images.is_empty() {
        return;
    }
    text.push_str("## Images\n\n");
    for (k, image) in images.iter().enumerate() {
        text.push_str(&format!("- Image {}: {}.\n", k + 1, image.revised_prompt));
    }
    text.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png_bytes: &[u8]) -> png::OutputInfo {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .expect("a PNG header");
        let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
        reader.next_frame(&mut buf).expect("a frame")
    }

    fn tool(size: &str, background: &str, partials: usize) -> ImageTool {
        ImageTool {
            size: size.into(),
            quality: "medium".into(),
            background: background.into(),
            partial_images: partials,
        }
    }

    #[test]
    fn the_tool_resolves_auto_options() {
        let t = ImageTool::parse(&[
            json!({"type": "web_search"}),
            json!({"type": "image_generation", "size": "auto", "quality": "high", "partial_images": 2, "output_format": "webp"}),
        ])
        .expect("a tool");
        assert_eq!(
            t,
            ImageTool {
                size: "1024x1024".into(),
                quality: "high".into(),
                background: "opaque".into(),
                partial_images: 2,
            }
        );
        assert_eq!(
            ImageTool::parse(&[json!({"type": "code_interpreter"})]),
            None
        );
    }

    #[test]
    fn images_are_real_pngs_of_the_right_shape_and_deterministic() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let wide = tool("1536x1024", "opaque", 3);
        let images = plan(&wide, 2, "Draw the Matterhorn at dawn, über alles", "x");
        assert_eq!(images.len(), 2);
        for image in &images {
            let info = decode(&b64.decode(&image.result).expect("base64"));
            assert_eq!((info.width, info.height), (192, 128));
            assert_eq!(info.color_type, png::ColorType::Rgb);
            assert_eq!(image.partials.len(), 3);
            for partial in &image.partials {
                decode(&b64.decode(partial).expect("base64"));
            }
            assert_ne!(image.partials[0], image.result);
        }
        assert_ne!(images[0].result, images[1].result);
        let again = plan(&wide, 1, "Draw the Matterhorn at dawn, über alles", "x");
        assert_eq!(again[0].result, images[0].result);
        let clear = plan(&tool("weird", "transparent", 0), 1, "", "x");
        let info = decode(&b64.decode(&clear[0].result).expect("base64"));
        assert_eq!((info.width, info.height), (128, 128));
        assert_eq!(info.color_type, png::ColorType::Rgba);
    }

    #[test]
    fn the_chart_is_a_png() {
        let info = decode(&bar_chart_png(&[3, 9, 1, 0], 160, 100));
        assert_eq!((info.width, info.height), (160, 100));
        decode(&bar_chart_png(&[], 32, 32));
    }
}
