//! Rendering canonical documents for clients, in both forms, with every file link
//! pointing at granary.
//!
//! Links are relative to the page (`../../files/<project>/<filename>` from
//! `/<repo>/simple/<project>/`), so they stay right behind any reverse proxy or path
//! prefix, and no client-supplied `Host` is ever echoed back.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde::Serialize;

use super::keys::normalize;
use super::model::{CoreMetadata, DistFile, ProjectList, ProjectPage, Yanked};

/// Characters escaped in a path segment (RFC 3986 `pchar` keeps the rest).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// The link to a file as served from the project's page.
#[must_use]
pub fn file_link(project: &str, filename: &str) -> String {
    format!(
        "../../files/{}/{}",
        utf8_percent_encode(project, SEGMENT),
        utf8_percent_encode(filename, SEGMENT)
    )
}

/// PEP 700 says 1.1 documents carry `versions` and every `size`; claim 1.1 only then.
fn api_version(page: &ProjectPage) -> &'static str {
    if page.versions.is_some() && page.files.iter().all(|f| f.size.is_some()) {
        "1.1"
    } else {
        "1.0"
    }
}

#[derive(Serialize)]
struct JsonMeta<'a> {
    #[serde(rename = "api-version")]
    api_version: &'a str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum JsonFlagOrHashes<'a> {
    Flag(bool),
    Hashes(&'a BTreeMap<String, String>),
}

#[derive(Serialize)]
#[serde(untagged)]
enum JsonYanked<'a> {
    Flag(bool),
    Reason(&'a str),
}

#[derive(Serialize)]
struct JsonFile<'a> {
    filename: &'a str,
    url: String,
    hashes: &'a BTreeMap<String, String>,
    #[serde(rename = "requires-python", skip_serializing_if = "Option::is_none")]
    requires_python: Option<&'a str>,
    #[serde(rename = "core-metadata")]
    core_metadata: JsonFlagOrHashes<'a>,
    #[serde(rename = "dist-info-metadata")]
    dist_info_metadata: JsonFlagOrHashes<'a>,
    #[serde(rename = "gpg-sig", skip_serializing_if = "Option::is_none")]
    gpg_sig: Option<bool>,
    yanked: JsonYanked<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(rename = "upload-time", skip_serializing_if = "Option::is_none")]
    upload_time: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonProject<'a> {
    meta: JsonMeta<'a>,
    name: &'a str,
    files: Vec<JsonFile<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    versions: Option<&'a Vec<String>>,
}

/// PEP 691 JSON for a project page.
#[must_use]
pub fn project_json(page: &ProjectPage, project: &str) -> Vec<u8> {
    let files = page
        .files
        .iter()
        .map(|file| {
            let metadata = match &file.core_metadata {
                CoreMetadata::Absent => JsonFlagOrHashes::Flag(false),
                CoreMetadata::Available(hashes) if hashes.is_empty() => {
                    JsonFlagOrHashes::Flag(true)
                }
                CoreMetadata::Available(hashes) => JsonFlagOrHashes::Hashes(hashes),
            };
            let metadata_again = match &metadata {
                JsonFlagOrHashes::Flag(flag) => JsonFlagOrHashes::Flag(*flag),
                JsonFlagOrHashes::Hashes(hashes) => JsonFlagOrHashes::Hashes(hashes),
            };
            JsonFile {
                filename: &file.filename,
                url: file_link(project, &file.filename),
                hashes: &file.hashes,
                requires_python: file.requires_python.as_deref(),
                core_metadata: metadata,
                dist_info_metadata: metadata_again,
                gpg_sig: file.gpg_sig,
                yanked: match &file.yanked {
                    Yanked::No => JsonYanked::Flag(false),
                    Yanked::Yes(None) => JsonYanked::Flag(true),
                    Yanked::Yes(Some(reason)) => JsonYanked::Reason(reason),
                },
                size: file.size,
                upload_time: file.upload_time.as_deref(),
            }
        })
        .collect();
    let document = JsonProject {
        meta: JsonMeta {
            api_version: api_version(page),
        },
        name: project,
        files,
        versions: page.versions.as_ref(),
    };
    serde_json::to_vec(&document).expect("serializing plain structs cannot fail")
}

/// PEP 503 HTML for a project page.
#[must_use]
pub fn project_html(page: &ProjectPage, project: &str) -> Vec<u8> {
    let mut html = String::with_capacity(256 + page.files.len() * 256);
    let title = html_escape::encode_text(project);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"{}\">\n    <title>Links for {title}</title>\n  </head>\n  <body>\n    <h1>Links for {title}</h1>\n",
        api_version(page)
    );
    for file in &page.files {
        write_anchor(&mut html, project, file);
    }
    html.push_str("  </body>\n</html>\n");
    html.into_bytes()
}

fn write_anchor(html: &mut String, project: &str, file: &DistFile) {
    let mut href = file_link(project, &file.filename);
    // pip reads one hash from the fragment; prefer the strongest common one.
    if let Some((algorithm, value)) = ["sha256", "sha512", "sha384", "sha224", "sha1", "md5"]
        .iter()
        .find_map(|a| file.hashes.get(*a).map(|v| (*a, v)))
        .or_else(|| file.hashes.iter().next().map(|(a, v)| (a.as_str(), v)))
    {
        let _ = write!(href, "#{algorithm}={value}");
    }
    let _ = write!(
        html,
        "    <a href=\"{}\"",
        html_escape::encode_double_quoted_attribute(&href)
    );
    if let Some(requires_python) = &file.requires_python {
        let _ = write!(
            html,
            " data-requires-python=\"{}\"",
            html_escape::encode_double_quoted_attribute(requires_python)
        );
    }
    if let Yanked::Yes(reason) = &file.yanked {
        let _ = write!(
            html,
            " data-yanked=\"{}\"",
            html_escape::encode_double_quoted_attribute(reason.as_deref().unwrap_or(""))
        );
    }
    if let CoreMetadata::Available(hashes) = &file.core_metadata {
        let value = hashes
            .get("sha256")
            .map(|v| ("sha256", v))
            .or_else(|| hashes.iter().next().map(|(a, v)| (a.as_str(), v)))
            .map_or_else(|| "true".to_owned(), |(a, v)| format!("{a}={v}"));
        let value = html_escape::encode_double_quoted_attribute(&value);
        let _ = write!(
            html,
            " data-core-metadata=\"{value}\" data-dist-info-metadata=\"{value}\""
        );
    }
    if let Some(gpg_sig) = file.gpg_sig {
        let _ = write!(html, " data-gpg-sig=\"{gpg_sig}\"");
    }
    let _ = writeln!(
        html,
        ">{}</a><br />",
        html_escape::encode_text(&file.filename)
    );
}

/// PEP 691 JSON for the project list.
#[must_use]
pub fn list_json(list: &ProjectList) -> Vec<u8> {
    #[derive(Serialize)]
    struct Entry<'a> {
        name: &'a str,
    }
    #[derive(Serialize)]
    struct Root<'a> {
        meta: JsonMeta<'a>,
        projects: Vec<Entry<'a>>,
    }
    let root = Root {
        meta: JsonMeta { api_version: "1.0" },
        projects: list.projects.iter().map(|name| Entry { name }).collect(),
    };
    serde_json::to_vec(&root).expect("serializing plain structs cannot fail")
}

/// PEP 503 HTML for the project list.
#[must_use]
pub fn list_html(list: &ProjectList) -> Vec<u8> {
    let mut html = String::with_capacity(128 + list.projects.len() * 64);
    html.push_str("<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.0\">\n    <title>Simple index</title>\n  </head>\n  <body>\n");
    for name in &list.projects {
        let link = format!("{}/", utf8_percent_encode(&normalize(name), SEGMENT));
        let _ = writeln!(
            html,
            "    <a href=\"{}\">{}</a><br />",
            html_escape::encode_double_quoted_attribute(&link),
            html_escape::encode_text(name)
        );
    }
    html.push_str("  </body>\n</html>\n");
    html.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::pypi::parse;
    use url::Url;

    fn sample() -> ProjectPage {
        ProjectPage {
            name: "Demo".into(),
            api_version: "1.1".into(),
            files: vec![
                DistFile {
                    filename: "demo-1.0+local.tar.gz".into(),
                    url: "https://files.test/demo-1.0+local.tar.gz".into(),
                    hashes: BTreeMap::from([
                        ("sha256".into(), "ab".into()),
                        ("md5".into(), "cd".into()),
                    ]),
                    requires_python: Some(">=3.8,<4".into()),
                    yanked: Yanked::Yes(Some("bad \"release\" <b>".into())),
                    core_metadata: CoreMetadata::Available(BTreeMap::from([(
                        "sha256".into(),
                        "ef".into(),
                    )])),
                    gpg_sig: None,
                    size: Some(10),
                    upload_time: Some("2024-01-01T00:00:00Z".into()),
                },
                DistFile {
                    filename: "demo-0.9-py3-none-any.whl".into(),
                    url: "https://files.test/demo-0.9-py3-none-any.whl".into(),
                    hashes: BTreeMap::new(),
                    requires_python: None,
                    yanked: Yanked::No,
                    core_metadata: CoreMetadata::Absent,
                    gpg_sig: Some(false),
                    size: None,
                    upload_time: None,
                },
            ],
            versions: Some(vec!["0.9".into(), "1.0+local".into()]),
        }
    }

    #[test]
    fn html_snapshot() {
        let html = String::from_utf8(project_html(&sample(), "demo")).expect("utf8");
        let expected = r#"<!DOCTYPE html>
<html>
  <head>
    <meta name="pypi:repository-version" content="1.0">
    <title>Links for demo</title>
  </head>
  <body>
    <h1>Links for demo</h1>
    <a href="../../files/demo/demo-1.0+local.tar.gz#sha256=ab" data-requires-python="&gt;=3.8,&lt;4" data-yanked="bad &quot;release&quot; &lt;b&gt;" data-core-metadata="sha256=ef" data-dist-info-metadata="sha256=ef">demo-1.0+local.tar.gz</a><br />
    <a href="../../files/demo/demo-0.9-py3-none-any.whl" data-gpg-sig="false">demo-0.9-py3-none-any.whl</a><br />
  </body>
</html>
"#;
        assert_eq!(html, expected);
    }

    #[test]
    fn json_snapshot() {
        let json: serde_json::Value =
            serde_json::from_slice(&project_json(&sample(), "demo")).expect("json");
        let expected = serde_json::json!({
            "meta": {"api-version": "1.0"},
            "name": "demo",
            "versions": ["0.9", "1.0+local"],
            "files": [
                {"filename": "demo-1.0+local.tar.gz", "url": "../../files/demo/demo-1.0+local.tar.gz",
                 "hashes": {"md5": "cd", "sha256": "ab"}, "requires-python": ">=3.8,<4",
                 "core-metadata": {"sha256": "ef"}, "dist-info-metadata": {"sha256": "ef"},
                 "yanked": "bad \"release\" <b>", "size": 10, "upload-time": "2024-01-01T00:00:00Z"},
                {"filename": "demo-0.9-py3-none-any.whl", "url": "../../files/demo/demo-0.9-py3-none-any.whl",
                 "hashes": {}, "core-metadata": false, "dist-info-metadata": false, "gpg-sig": false, "yanked": false}
            ]
        });
        assert_eq!(json, expected);
    }

    #[test]
    fn rendered_forms_parse_back_to_the_same_files() {
        let page = sample();
        let base = Url::parse("http://granary.test/pypi/simple/demo/").expect("url");
        for (body, json) in [
            (project_html(&page, "demo"), false),
            (project_json(&page, "demo"), true),
        ] {
            let parsed = parse::project_page(&body, json, &base, "demo").expect("parse");
            assert_eq!(parsed.files.len(), 2);
            assert_eq!(
                parsed.files[0].url,
                "http://granary.test/pypi/files/demo/demo-1.0+local.tar.gz"
            );
            assert_eq!(
                parsed.files[0].requires_python,
                page.files[0].requires_python
            );
            assert_eq!(parsed.files[0].yanked, page.files[0].yanked);
            assert_eq!(parsed.files[0].core_metadata, page.files[0].core_metadata);
        }
    }

    #[test]
    fn list_links_are_normalized() {
        let list = ProjectList {
            api_version: "1.0".into(),
            projects: vec!["Foo_Bar".into()],
        };
        let html = String::from_utf8(list_html(&list)).expect("utf8");
        assert!(html.contains("<a href=\"foo-bar/\">Foo_Bar</a>"), "{html}");
        let json: serde_json::Value = serde_json::from_slice(&list_json(&list)).expect("json");
        assert_eq!(json["projects"][0]["name"], "Foo_Bar");
    }
}
