//! Reading the records the stats query packs: one
//! `[bucket, status, model, name, input, cached, output, reasoning, total, service_tier,
//! web_search, web_search_preview, file_search, containers, images, image_fee]` per job, as
//! SQLite's `json_array` writes them (no spaces) or PostgreSQL's `json_build_array` (a space
//! after each comma), counts null where none is known, the tier null where none was recorded,
//! joined by commas (a JSON array without its brackets; nothing for no jobs). A direct reader
//! takes the common case (text without escapes, integers that fit, JSON's whitespace between
//! tokens) in a fifth of `serde_json`'s time; anything else goes to `serde_json`, so every
//! valid list reads the same either way.

use std::borrow::Cow;

use serde::Deserialize;

/// One job (or paid duplicate) of the stats query, its text borrowed from the array.
#[derive(Debug, PartialEq, Eq, Deserialize)]
pub(super) struct Record<'a> {
    /// `created_at / STATS_BUCKET_MS`.
    pub bucket: i64,
    #[serde(borrow)]
    pub status: Cow<'a, str>,
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// The five token counts (`input`, `cached`, `output`, `reasoning`, `total`); 0 where
    /// none is known (JSON null), as a sum counts them.
    #[serde(deserialize_with = "counts")]
    pub input: i64,
    #[serde(deserialize_with = "counts")]
    pub cached: i64,
    #[serde(deserialize_with = "counts")]
    pub output: i64,
    #[serde(deserialize_with = "counts")]
    pub reasoning: i64,
    #[serde(deserialize_with = "counts")]
    pub total: i64,
    /// The `service_tier` recorded, if any.
    #[serde(borrow)]
    pub tier: Option<Cow<'a, str>>,
    /// The tool counts (`web_search_calls`, `web_search_preview_calls`, `file_search_calls`,
    /// `code_containers`, `images`) and `image_fee_microusd`; 0 where none is known.
    #[serde(deserialize_with = "counts")]
    pub web_search: i64,
    #[serde(deserialize_with = "counts")]
    pub web_search_preview: i64,
    #[serde(deserialize_with = "counts")]
    pub file_search: i64,
    #[serde(deserialize_with = "counts")]
    pub containers: i64,
    #[serde(deserialize_with = "counts")]
    pub images: i64,
    #[serde(deserialize_with = "counts")]
    pub image_fee: i64,
    /// Not in the JSON: whether the array holds paid duplicates.
    #[serde(skip)]
    pub duplicate: bool,
}

impl Record<'_> {
    /// The grouping key, in the order of the result: bucket, model, name, status, tier (text
    /// in byte order, as SQLite compares it; no tier first).
    pub fn key(&self) -> (i64, &str, &str, &str, Option<&str>) {
        (
            self.bucket,
            &self.model,
            &self.name,
            &self.status,
            self.tier.as_deref(),
        )
    }
}

fn counts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(Option::<i64>::deserialize(d)?.unwrap_or(0))
}

impl Record<'_> {
    /// The record with its own copy of its text.
    fn into_owned(self) -> Record<'static> {
        Record {
            status: Cow::Owned(self.status.into_owned()),
            model: Cow::Owned(self.model.into_owned()),
            name: Cow::Owned(self.name.into_owned()),
            tier: self.tier.map(|t| Cow::Owned(t.into_owned())),
            ..self
        }
    }
}

/// Appends the records of one list to `out`, each marked `duplicate` or not.
pub(super) fn read_records<'a>(
    list: &'a str,
    duplicate: bool,
    out: &mut Vec<Record<'a>>,
) -> Result<(), serde_json::Error> {
    let before = out.len();
    if Reader::new(list).records(duplicate, out).is_some() {
        return Ok(());
    }
    out.truncate(before);
    let array = format!("[{list}]");
    let records: Vec<Record<'_>> = serde_json::from_str(&array)?;
    out.extend(records.into_iter().map(|r| Record {
        duplicate,
        ..r.into_owned()
    }));
    Ok(())
}

/// The direct reader: `None` as soon as the text is anything but the common case.
struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, at: 0 }
    }

    fn records(mut self, duplicate: bool, out: &mut Vec<Record<'a>>) -> Option<()> {
        let mut first = true;
        self.space();
        while self.at < self.text.len() {
            if !first {
                self.eat(b',')?;
            }
            first = false;
            out.push(self.record(duplicate)?);
            self.space();
        }
        Some(())
    }

    fn record(&mut self, duplicate: bool) -> Option<Record<'a>> {
        self.eat(b'[')?;
        let bucket = self.integer()?;
        let mut text = [""; 3];
        for t in &mut text {
            self.eat(b',')?;
            *t = self.string()?;
        }
        let mut counts = [0; 5];
        for c in &mut counts {
            self.eat(b',')?;
            *c = self.count()?;
        }
        self.eat(b',')?;
        let tier = self.nullable_string()?.map(Cow::Borrowed);
        let mut tools = [0; 6];
        for c in &mut tools {
            self.eat(b',')?;
            *c = self.count()?;
        }
        self.eat(b']')?;
        let [status, model, name] = text.map(Cow::Borrowed);
        let [input, cached, output, reasoning, total] = counts;
        let [
            web_search,
            web_search_preview,
            file_search,
            containers,
            images,
            image_fee,
        ] = tools;
        Some(Record {
            bucket,
            status,
            model,
            name,
            input,
            cached,
            output,
            reasoning,
            total,
            tier,
            web_search,
            web_search_preview,
            file_search,
            containers,
            images,
            image_fee,
            duplicate,
        })
    }

    /// Skips JSON's whitespace (space, tab, line feed, carriage return) before a token.
    fn space(&mut self) {
        self.at += self.text.as_bytes()[self.at..]
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .count();
    }

    /// The punctuation `byte`, after any whitespace.
    fn eat(&mut self, byte: u8) -> Option<()> {
        self.space();
        (self.text.as_bytes().get(self.at) == Some(&byte)).then(|| self.at += 1)
    }

    /// An integer that fits an `i64` (`i64::MIN` itself goes to `serde_json`), after any
    /// whitespace (none between its sign and its digits).
    fn integer(&mut self) -> Option<i64> {
        let negative = self.eat(b'-').is_some();
        let digits = self.text.as_bytes()[self.at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        let mut n: i64 = 0;
        for b in &self.text.as_bytes()[self.at..self.at + digits] {
            n = n.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
        }
        self.at += digits;
        Some(if negative { -n } else { n })
    }

    /// A token count: an integer, or null (0).
    fn count(&mut self) -> Option<i64> {
        self.space();
        if self.text.as_bytes()[self.at..].starts_with(b"null") {
            self.at += 4;
            return Some(0);
        }
        self.integer()
    }

    /// A string without escapes, borrowed, or null (`None`); `None` outside when neither.
    fn nullable_string(&mut self) -> Option<Option<&'a str>> {
        self.space();
        if self.text.as_bytes()[self.at..].starts_with(b"null") {
            self.at += 4;
            return Some(None);
        }
        self.string().map(Some)
    }

    /// A string without escapes, borrowed, after any whitespace (inside it, every byte is
    /// its own).
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let len = self.text.as_bytes()[start..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\')?;
        self.at += len;
        self.eat(b'"')?;
        self.text.get(start..start + len)
    }
}

#[cfg(test)]
mod tests {
    use super::{Reader, Record, read_records};
    use crate::store::sql;

    fn serde_read(list: &str) -> Vec<Record<'static>> {
        let array = format!("[{list}]");
        let records: Vec<Record<'_>> = serde_json::from_str(&array).unwrap();
        records.into_iter().map(Record::into_owned).collect()
    }

    /// What SQLite writes, for text and numbers of every kind: the direct reader agrees with
    /// `serde_json` where it reads, and hands the rest over.
    #[tokio::test]
    async fn the_direct_reader_agrees_with_serde_json() {
        crate::store::install_drivers();
        let pool = sqlx::AnyPool::connect("sqlite::memory:").await.unwrap();
        let texts = [
            "completed",
            "",
            "gpt-5",
            "a \"quoted\" name",
            "back\\slash",
            "tab\there",
            "line\nbreak",
            "\u{1}control",
            "ünïcödé ✓ 日本語",
            "emoji 🦀",
            "/slash",
        ];
        let counts = [
            "NULL",
            "0",
            "7",
            "-3",
            "9223372036854775807",
            "-9223372036854775807",
            "(-9223372036854775807 - 1)",
        ];
        for (i, text) in texts.iter().enumerate() {
            for (j, count) in counts.iter().enumerate() {
                // The tier: the text itself, or NULL every other time.
                let tier = (j % 2 == 0).then_some(*text);
                let list: String = sql::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT group_concat(json_array(b, ?, ?, ?, {count}, 1, {count}, NULL, 2, ?, \
                     {count}, 0, NULL, 3, {count}, 7), ',') \
                     FROM (SELECT {i} AS b UNION ALL SELECT -{j})"
                )))
                .bind(text)
                .bind("m")
                .bind(text)
                .bind(tier)
                .fetch_one(&pool)
                .await
                .unwrap();
                let want = serde_read(&list);
                assert_eq!(want[0].name, *text, "{list}");
                let mut direct = Vec::new();
                let plain = !text.contains(['"', '\\']) && !text.chars().any(char::is_control);
                let fits = !count.contains("- 1");
                assert_eq!(
                    Reader::new(&list).records(false, &mut direct).is_some(),
                    plain && fits,
                    "{list}"
                );
                if plain && fits {
                    assert_eq!(direct, want, "{list}");
                }
                let mut read = Vec::new();
                read_records(&list, true, &mut read).unwrap();
                assert!(read.iter().all(|r| r.duplicate));
                let read: Vec<Record<'_>> = read
                    .into_iter()
                    .map(|r| Record {
                        duplicate: false,
                        ..r
                    })
                    .collect();
                assert_eq!(read, want, "{list}");
            }
        }
        pool.close().await;
    }

    /// PostgreSQL's `json_build_array(...)::text` puts a space after each comma, and JSON
    /// allows whitespace between any tokens: the direct reader takes both forms, and reads
    /// them as `serde_json` does (text holding `, ` as it is); what it does not take (escapes,
    /// a space inside a number) still reads the same through `serde_json`.
    #[test]
    fn the_direct_reader_takes_postgresql_spacing() {
        let plain = "[1,\"completed\",\"gpt-5\",\"a, b\",-3,null,7,0,9223372036854775807,\
                     null,0,null,2,1,1,42000],[-2,\"failed\",\"o3\",\" , \",1,2,3,4,5,\"flex\",\
                     1,0,0,0,0,0]";
        let spaced = "[1, \"completed\", \"gpt-5\", \"a, b\", -3, null, 7, 0, 9223372036854775807, \
                      null, 0, null, 2, 1, 1, 42000], [-2, \"failed\", \"o3\", \" , \", 1, 2, 3, 4, 5, \
                      \"flex\", 1, 0, 0, 0, 0, 0]";
        let loose = " \t[ 1 ,\"completed\"\n,\"gpt-5\",\"a, b\",-3,null,7,0,9223372036854775807,\r\n\
                     null,0,null,2,1,1,42000 ]\n,\n[-2,\"failed\",\"o3\",\" , \",1,2,3,4,5,\"flex\",\
                     1,0,0,0,0,0] \n";
        let want = serde_read(plain);
        assert_eq!(want.len(), 2);
        assert_eq!((&*want[0].name, want[0].input), ("a, b", -3));
        assert_eq!(
            (&*want[1].name, want[1].tier.as_deref()),
            (" , ", Some("flex"))
        );
        for list in [plain, spaced, loose] {
            let mut direct = Vec::new();
            assert!(
                Reader::new(list).records(false, &mut direct).is_some(),
                "the direct reader refused {list:?}"
            );
            assert_eq!(direct, want, "{list:?}");
            assert_eq!(serde_read(list), want, "{list:?}");
        }
        // Escaped quotes, and a space between a sign and its digits, are not the direct
        // reader's: `serde_json` reads the first and refuses the second, as before.
        let escaped = "[1, \"completed\", \"gpt-5\", \"say \\\"a, b\\\"\", 1, 2, 3, 4, 5, null, \
                       0, 0, 0, 0, 0, 0]";
        assert!(
            Reader::new(escaped)
                .records(false, &mut Vec::new())
                .is_none()
        );
        let mut read = Vec::new();
        read_records(escaped, false, &mut read).unwrap();
        assert_eq!(read[0].name, "say \"a, b\"");
        assert_eq!(read, serde_read(escaped));
        let split = "[1, \"completed\", \"gpt-5\", \"n\", - 1, 2, 3, 4, 5, null, 0, 0, 0, 0, 0, 0]";
        assert!(Reader::new(split).records(false, &mut Vec::new()).is_none());
        assert!(read_records(split, false, &mut Vec::new()).is_err());
    }

    #[test]
    fn empty_and_malformed_lists() {
        let mut out = Vec::new();
        read_records("", false, &mut out).unwrap();
        assert!(out.is_empty());
        let good = "[1,\"a\",\"b\",\"c\",1,2,3,4,5,\"flex\",1,0,2,1,1,42000]";
        read_records(good, false, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].tier.as_deref(), Some("flex"));
        assert_eq!((out[0].web_search, out[0].image_fee), (1, 42000));
        out.clear();
        for bad in [
            "[",
            "[1,\"a\",\"b\",\"c\",1,2,3,4,5]",
            "[1,\"a\",\"b\",\"c\",1,2,3,4,5,null,1,0,2,1,1]",
            "[1,\"a\",\"b\",\"c\",1,2,3,4,5,null,1,0,2,1,1,1]x",
            "[1,\"a\",\"b\",\"c\",1,2,3,4,5,null,1,0,2,1,1,1],",
            "[1,\"a\",\"b\",\"c\",1,2,3,4,5,null,1,0,2,1,1,1.5]",
            "[1,\"a\",\"b\",\"c\",1,2,3,4,5,7,1,0,2,1,1,1]",
            "[[1,\"a\",\"b\",\"c\",1,2,3,4,5,null,1,0,2,1,1,1]]",
        ] {
            assert!(read_records(bad, false, &mut out).is_err(), "{bad}");
            assert!(out.is_empty(), "{bad}");
        }
    }
}
