//! Reading the upstream's Simple API documents, in either form, into the canonical
//! model. Relative URLs are resolved against the document's own URL (after redirects),
//! as PEP 503 and PEP 691 require.

use std::collections::BTreeMap;

use html5gum::{Token, Tokenizer};
use serde::Deserialize;
use url::Url;

use super::model::{CoreMetadata, DistFile, ProjectList, ProjectPage, Yanked};

/// Which form the upstream sent, by its `Content-Type`.
#[must_use]
pub fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        let ct = ct.to_ascii_lowercase();
        ct.contains("+json") || ct.starts_with("application/json")
    })
}

/// Parses a project page in either form.
///
/// # Errors
/// A description of what is malformed.
pub fn project_page(
    body: &[u8],
    json: bool,
    base: &Url,
    project: &str,
) -> Result<ProjectPage, String> {
    if json {
        project_page_json(body, base)
    } else {
        Ok(project_page_html(body, base, project))
    }
}

/// Parses the project list in either form.
///
/// # Errors
/// A description of what is malformed.
pub fn project_list(body: &[u8], json: bool) -> Result<ProjectList, String> {
    if json {
        #[derive(Deserialize)]
        struct Root {
            meta: Meta,
            projects: Vec<Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            name: String,
        }
        let root: Root =
            serde_json::from_slice(body).map_err(|e| format!("project list JSON: {e}"))?;
        Ok(ProjectList {
            api_version: root.meta.api_version,
            projects: root.projects.into_iter().map(|p| p.name).collect(),
        })
    } else {
        let (api_version, anchors) = anchors(body);
        Ok(ProjectList {
            api_version: api_version.unwrap_or_else(|| "1.0".to_owned()),
            projects: anchors
                .into_iter()
                .map(|a| a.text.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
        })
    }
}

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "api-version")]
    api_version: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FlagOrHashes {
    Flag(bool),
    Hashes(BTreeMap<String, String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FlagOrReason {
    Flag(bool),
    Reason(String),
}

#[derive(Deserialize)]
struct JsonFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
    #[serde(rename = "requires-python")]
    requires_python: Option<String>,
    #[serde(rename = "core-metadata")]
    core_metadata: Option<FlagOrHashes>,
    #[serde(rename = "dist-info-metadata")]
    dist_info_metadata: Option<FlagOrHashes>,
    #[serde(rename = "gpg-sig")]
    gpg_sig: Option<bool>,
    yanked: Option<FlagOrReason>,
    size: Option<u64>,
    #[serde(rename = "upload-time")]
    upload_time: Option<String>,
}

#[derive(Deserialize)]
struct JsonProject {
    meta: Meta,
    name: String,
    files: Vec<JsonFile>,
    versions: Option<Vec<String>>,
}

fn project_page_json(body: &[u8], base: &Url) -> Result<ProjectPage, String> {
    let project: JsonProject =
        serde_json::from_slice(body).map_err(|e| format!("project JSON: {e}"))?;
    let mut files = Vec::with_capacity(project.files.len());
    for file in project.files {
        let (url, _) = resolve(base, &file.url)?;
        // PEP 714: `core-metadata` wins; `dist-info-metadata` is the older spelling.
        let core_metadata = match file.core_metadata.or(file.dist_info_metadata) {
            None | Some(FlagOrHashes::Flag(false)) => CoreMetadata::Absent,
            Some(FlagOrHashes::Flag(true)) => CoreMetadata::Available(BTreeMap::new()),
            Some(FlagOrHashes::Hashes(hashes)) => CoreMetadata::Available(lowercase_values(hashes)),
        };
        let yanked = match file.yanked {
            None | Some(FlagOrReason::Flag(false)) => Yanked::No,
            Some(FlagOrReason::Flag(true)) => Yanked::Yes(None),
            Some(FlagOrReason::Reason(reason)) => Yanked::Yes(Some(reason)),
        };
        files.push(DistFile {
            filename: file.filename,
            url,
            hashes: lowercase_values(file.hashes),
            requires_python: file.requires_python,
            yanked,
            core_metadata,
            gpg_sig: file.gpg_sig,
            size: file.size,
            upload_time: file.upload_time,
        });
    }
    dedup_files(&mut files);
    Ok(ProjectPage {
        name: project.name,
        api_version: project.meta.api_version,
        files,
        versions: project.versions,
    })
}

fn project_page_html(body: &[u8], base: &Url, project: &str) -> ProjectPage {
    let (api_version, anchors) = anchors(body);
    let mut files = Vec::with_capacity(anchors.len());
    for anchor in anchors {
        let Some(href) = anchor.attributes.get("href") else {
            continue;
        };
        let Ok((url, fragment)) =
            resolve(&anchor.base.clone().unwrap_or_else(|| base.clone()), href)
        else {
            continue;
        };
        let mut hashes = BTreeMap::new();
        if let Some((algorithm, value)) = fragment.as_deref().and_then(|f| f.split_once('=')) {
            hashes.insert(algorithm.to_ascii_lowercase(), value.to_ascii_lowercase());
        }
        let text = anchor.text.trim();
        let filename = if text.is_empty() {
            url.rsplit('/')
                .next()
                .map(percent_decode)
                .unwrap_or_default()
        } else {
            text.to_owned()
        };
        let core_metadata = anchor
            .attributes
            .get("data-core-metadata")
            .or_else(|| anchor.attributes.get("data-dist-info-metadata"))
            .map_or(CoreMetadata::Absent, |value| {
                parse_metadata_attribute(value)
            });
        let yanked = anchor
            .attributes
            .get("data-yanked")
            .map_or(Yanked::No, |reason| {
                Yanked::Yes(Some(reason.clone()).filter(|r| !r.is_empty()))
            });
        files.push(DistFile {
            filename,
            url,
            hashes,
            requires_python: anchor.attributes.get("data-requires-python").cloned(),
            yanked,
            core_metadata,
            gpg_sig: anchor.attributes.get("data-gpg-sig").map(|v| v == "true"),
            size: None,
            upload_time: None,
        });
    }
    dedup_files(&mut files);
    ProjectPage {
        name: project.to_owned(),
        api_version: api_version.unwrap_or_else(|| "1.0".to_owned()),
        files,
        versions: None,
    }
}

fn parse_metadata_attribute(value: &str) -> CoreMetadata {
    match value.trim() {
        "false" => CoreMetadata::Absent,
        "true" | "" => CoreMetadata::Available(BTreeMap::new()),
        other => match other.split_once('=') {
            Some((algorithm, hex)) => CoreMetadata::Available(BTreeMap::from([(
                algorithm.to_ascii_lowercase(),
                hex.to_ascii_lowercase(),
            )])),
            None => CoreMetadata::Available(BTreeMap::new()),
        },
    }
}

/// Keeps the first file of each name (clients and our file URLs key on the name),
/// and only names granary serves: a page never lists a file its URL would refuse
/// (found by fuzzing: a name with a control character or blank ends was listed, and
/// read back from the HTML form as another name).
/// Keeps the first of each filename, and only names granary serves.
fn dedup_files(files: &mut Vec<DistFile>) {
    let keep: Vec<bool> = {
        let mut seen = std::collections::HashSet::with_capacity(files.len());
        files
            .iter()
            .map(|f| {
                super::keys::is_valid_filename(&f.filename) && seen.insert(f.filename.as_str())
            })
            .collect()
    };
    let mut keep = keep.into_iter();
    files.retain(|_| keep.next().unwrap_or(false));
}

/// Hash names and values in lower case (rebuilt only when one is not already).
fn lowercase_values(map: BTreeMap<String, String>) -> BTreeMap<String, String> {
    let has_upper = |text: &String| text.bytes().any(|b| b.is_ascii_uppercase());
    if !map.iter().any(|(k, v)| has_upper(k) || has_upper(v)) {
        return map;
    }
    map.into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_ascii_lowercase()))
        .collect()
}

/// Resolves `href` against `base`; returns the URL without fragment, and the fragment.
fn resolve(base: &Url, href: &str) -> Result<(String, Option<String>), String> {
    let mut url = base.join(href).map_err(|e| format!("link `{href}`: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("link `{href}` is not http(s)"));
    }
    let fragment = url.fragment().map(str::to_owned);
    url.set_fragment(None);
    Ok((url.to_string(), fragment))
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

struct Anchor {
    attributes: BTreeMap<String, String>,
    text: String,
    base: Option<Url>,
}

/// Every `<a>` with its attributes (entity-decoded) and text, plus the repository
/// version from `<meta name="pypi:repository-version">`.
fn anchors(body: &[u8]) -> (Option<String>, Vec<Anchor>) {
    let mut api_version = None;
    let mut base: Option<Url> = None;
    let mut anchors = Vec::new();
    let mut open: Option<Anchor> = None;
    for token in Tokenizer::new(body).flatten() {
        match token {
            Token::StartTag(tag) => {
                let name = String::from_utf8_lossy(&tag.name).to_ascii_lowercase();
                let attributes: BTreeMap<String, String> = tag
                    .attributes
                    .iter()
                    .map(|(k, v)| {
                        (
                            String::from_utf8_lossy(k).to_ascii_lowercase(),
                            String::from_utf8_lossy(v).into_owned(),
                        )
                    })
                    .collect();
                match name.as_str() {
                    "a" => {
                        if let Some(anchor) = open.take() {
                            anchors.push(anchor);
                        }
                        open = Some(Anchor {
                            attributes,
                            text: String::new(),
                            base: base.clone(),
                        });
                    }
                    "meta"
                        if attributes.get("name").map(String::as_str)
                            == Some("pypi:repository-version") =>
                    {
                        api_version = attributes.get("content").cloned();
                    }
                    "base" => {
                        base = attributes.get("href").and_then(|h| Url::parse(h).ok());
                    }
                    _ => {}
                }
            }
            Token::String(text) => {
                if let Some(anchor) = open.as_mut() {
                    anchor.text.push_str(&String::from_utf8_lossy(&text));
                }
            }
            Token::EndTag(tag) if tag.name.eq_ignore_ascii_case(b"a") => {
                if let Some(anchor) = open.take() {
                    anchors.push(anchor);
                }
            }
            _ => {}
        }
    }
    if let Some(anchor) = open.take() {
        anchors.push(anchor);
    }
    (api_version, anchors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://upstream.test/simple/demo/").expect("url")
    }

    #[test]
    fn html_keeps_every_attribute_clients_rely_on() {
        let html = br#"<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.1"></head><body>
<a href="../../files/demo-1.0.tar.gz#sha256=ABCDEF" data-requires-python="&gt;=3.8">demo-1.0.tar.gz</a><br/>
<a href="https://files.test/d/demo-1.0-py3-none-any.whl#sha256=1234" data-core-metadata="sha256=beef" data-yanked="broken &amp; bad">demo-1.0-py3-none-any.whl</a>
<a href="/x/demo-0.9.zip" data-dist-info-metadata="true" data-yanked="">demo-0.9.zip</a>
<a href="demo-0.8.zip"></a>
</body></html>"#;
        let page = project_page(html, false, &base(), "demo").expect("parse");
        assert_eq!(page.api_version, "1.1");
        assert_eq!(page.files.len(), 4);
        let sdist = &page.files[0];
        assert_eq!(sdist.url, "http://upstream.test/files/demo-1.0.tar.gz");
        assert_eq!(sdist.hashes["sha256"], "abcdef");
        assert_eq!(sdist.requires_python.as_deref(), Some(">=3.8"));
        let wheel = &page.files[1];
        assert_eq!(wheel.url, "https://files.test/d/demo-1.0-py3-none-any.whl");
        assert_eq!(wheel.yanked, Yanked::Yes(Some("broken & bad".into())));
        assert_eq!(
            wheel.core_metadata,
            CoreMetadata::Available(BTreeMap::from([("sha256".into(), "beef".into())]))
        );
        assert_eq!(
            page.files[2].core_metadata,
            CoreMetadata::Available(BTreeMap::new())
        );
        assert_eq!(page.files[2].yanked, Yanked::Yes(None));
        assert_eq!(
            page.files[3].filename, "demo-0.8.zip",
            "name from the URL when the text is empty"
        );
    }

    #[test]
    fn json_keeps_pep_691_700_714_fields() {
        let json = br#"{"meta":{"api-version":"1.1"},"name":"demo","versions":["1.0"],"files":[
            {"filename":"demo-1.0.tar.gz","url":"../../files/demo-1.0.tar.gz","hashes":{"sha256":"AB"},
             "requires-python":">=3.8","dist-info-metadata":{"sha256":"cd"},"yanked":"oops","size":10,"upload-time":"2024-01-01T00:00:00Z"},
            {"filename":"demo-1.0.tar.gz","url":"dup","hashes":{}},
            {"filename":"demo-0.9.tar.gz","url":"https://files.test/demo-0.9.tar.gz","hashes":{},"core-metadata":true,"yanked":false}
        ]}"#;
        let page = project_page(json, true, &base(), "demo").expect("parse");
        assert_eq!(page.versions.as_deref(), Some(&["1.0".to_owned()][..]));
        assert_eq!(page.files.len(), 2, "duplicate filename dropped");
        let first = &page.files[0];
        assert_eq!(first.url, "http://upstream.test/files/demo-1.0.tar.gz");
        assert_eq!(first.hashes["sha256"], "ab");
        assert_eq!(first.yanked, Yanked::Yes(Some("oops".into())));
        assert_eq!(first.size, Some(10));
        assert_eq!(
            first.core_metadata,
            CoreMetadata::Available(BTreeMap::from([("sha256".into(), "cd".into())]))
        );
        assert_eq!(
            page.files[1].core_metadata,
            CoreMetadata::Available(BTreeMap::new())
        );
        assert!(project_page(b"{not json", true, &base(), "demo").is_err());
    }

    #[test]
    fn project_list_in_both_forms() {
        let html = br#"<html><body><a href="/simple/alpha/">Alpha</a><a href="/simple/beta/">beta</a></body></html>"#;
        assert_eq!(
            project_list(html, false).expect("html").projects,
            vec!["Alpha", "beta"]
        );
        let json = br#"{"meta":{"api-version":"1.0"},"projects":[{"name":"Alpha"}]}"#;
        assert_eq!(
            project_list(json, true).expect("json").projects,
            vec!["Alpha"]
        );
    }

    /// Found by fuzzing (`fuzz/corpus/simple_html/crash-de9d…`, `simple_json/crash-1ee0…`).
    #[test]
    fn files_granary_would_not_serve_are_not_listed() {
        let html = b"<a href=\"x/a-1.0.tar.gz\">a-1.0.tar.gz</a><a href=\"x/ht%0C\"></a>";
        let page = project_page(html, false, &base(), "a").expect("page");
        let names: Vec<&str> = page.files.iter().map(|f| f.filename.as_str()).collect();
        assert_eq!(names, ["a-1.0.tar.gz"]);
        let json = br#"{"meta":{"api-version":"1.0"},"name":"a","files":[
            {"filename":" a-0.9.tar.gz","url":"x/a-0.9.tar.gz","hashes":{}},
            {"filename":"a-1.0.tar.gz","url":"x/a-1.0.tar.gz","hashes":{}}]}"#;
        let page = project_page(json, true, &base(), "a").expect("page");
        let names: Vec<&str> = page.files.iter().map(|f| f.filename.as_str()).collect();
        assert_eq!(names, ["a-1.0.tar.gz"]);
    }

    #[test]
    fn non_http_links_are_dropped() {
        let html = br#"<a href="file:///etc/passwd">passwd</a><a href="javascript:alert(1)">x</a>"#;
        assert!(project_page(html, false, &base(), "demo")
            .expect("parse")
            .files
            .is_empty());
    }
}
