//! A POM as declared (no inheritance yet): coordinates, parent, properties, managed
//! and declared dependencies. [`super::dependencies`] makes the effective values.

use std::collections::BTreeMap;

use quick_xml::events::Event;
use quick_xml::Reader;

/// One `<dependency>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PomDependency {
    pub group: String,
    pub artifact: String,
    pub version: Option<String>,
    pub scope: Option<String>,
    pub kind: Option<String>,
    pub classifier: Option<String>,
    pub optional: Option<String>,
    /// `groupId:artifactId` of each exclusion.
    pub exclusions: Vec<String>,
}

/// What one POM declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pom {
    pub group: Option<String>,
    pub artifact: Option<String>,
    pub version: Option<String>,
    pub packaging: Option<String>,
    /// `groupId`, `artifactId`, `version` of `<parent>`.
    pub parent: Option<(String, String, String)>,
    pub properties: BTreeMap<String, String>,
    pub managed: Vec<PomDependency>,
    pub dependencies: Vec<PomDependency>,
}

const MAX_DEPTH: usize = 64;

impl Pom {
    /// # Errors
    /// Malformed XML.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let mut reader = Reader::from_reader(body);
        let mut buf = Vec::new();
        let mut path: Vec<String> = Vec::new();
        let mut text = String::new();
        let mut pom = Self::default();
        let mut parent: [Option<String>; 3] = [None, None, None];
        loop {
            let event = reader.read_event_into(&mut buf).map_err(|e| {
                format!(
                    "not well-formed XML at byte {}: {e}",
                    reader.error_position()
                )
            })?;
            match event {
                Event::Start(start) => {
                    if path.len() >= MAX_DEPTH {
                        return Err(format!("elements nested deeper than {MAX_DEPTH}"));
                    }
                    path.push(String::from_utf8_lossy(start.local_name().as_ref()).into_owned());
                    text.clear();
                    let at: Vec<&str> = path.iter().map(String::as_str).collect();
                    match at.as_slice() {
                        ["project", "dependencies", "dependency"] => {
                            pom.dependencies.push(PomDependency::default());
                        }
                        ["project", "dependencyManagement", "dependencies", "dependency"] => {
                            pom.managed.push(PomDependency::default());
                        }
                        _ => {}
                    }
                }
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    super::xml_texts::append_text(&event, &mut text)?;
                }
                Event::End(_) => {
                    let value = text.trim().to_owned();
                    text.clear();
                    let at: Vec<&str> = path.iter().map(String::as_str).collect();
                    if !value.is_empty() {
                        pom.assign(&at, value, &mut parent);
                    }
                    path.pop();
                }
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
        }
        if let [Some(group), Some(artifact), Some(version)] = parent {
            pom.parent = Some((group, artifact, version));
        }
        Ok(pom)
    }

    fn assign(&mut self, at: &[&str], value: String, parent: &mut [Option<String>; 3]) {
        match at {
            ["project", "groupId"] => self.group = Some(value),
            ["project", "artifactId"] => self.artifact = Some(value),
            ["project", "version"] => self.version = Some(value),
            ["project", "packaging"] => self.packaging = Some(value),
            ["project", "parent", "groupId"] => parent[0] = Some(value),
            ["project", "parent", "artifactId"] => parent[1] = Some(value),
            ["project", "parent", "version"] => parent[2] = Some(value),
            ["project", "properties", name] => {
                self.properties.insert((*name).to_owned(), value);
            }
            ["project", "dependencies", "dependency", rest @ ..] => {
                if let Some(dependency) = self.dependencies.last_mut() {
                    dependency.assign(rest, value);
                }
            }
            ["project", "dependencyManagement", "dependencies", "dependency", rest @ ..] => {
                if let Some(dependency) = self.managed.last_mut() {
                    dependency.assign(rest, value);
                }
            }
            _ => {}
        }
    }
}

impl PomDependency {
    fn assign(&mut self, at: &[&str], value: String) {
        match at {
            ["groupId"] => self.group = value,
            ["artifactId"] => self.artifact = value,
            ["version"] => self.version = Some(value),
            ["scope"] => self.scope = Some(value),
            ["type"] => self.kind = Some(value),
            ["classifier"] => self.classifier = Some(value),
            ["optional"] => self.optional = Some(value),
            ["exclusions", "exclusion", "groupId"] => self.exclusions.push(value),
            ["exclusions", "exclusion", "artifactId"] => {
                if let Some(group) = self.exclusions.last_mut() {
                    if !group.contains(':') {
                        group.push(':');
                        group.push_str(&value);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_read_in_place() {
        let pom = Pom::parse(
            br#"<project xmlns="http://maven.apache.org/POM/4.0.0">
  <parent><groupId>org.example</groupId><artifactId>parent</artifactId><version>3</version></parent>
  <artifactId>lib</artifactId>
  <properties><guava.version>33.0</guava.version></properties>
  <dependencyManagement><dependencies>
    <dependency><groupId>com.google.guava</groupId><artifactId>guava</artifactId><version>${guava.version}</version></dependency>
  </dependencies></dependencyManagement>
  <dependencies>
    <dependency><groupId>com.google.guava</groupId><artifactId>guava</artifactId>
      <exclusions><exclusion><groupId>com.google.code.findbugs</groupId><artifactId>jsr305</artifactId></exclusion></exclusions>
    </dependency>
    <dependency><groupId>junit</groupId><artifactId>junit</artifactId><version>4.13</version><scope>test</scope><optional>true</optional></dependency>
  </dependencies>
</project>"#,
        )
        .expect("a POM");
        assert_eq!(pom.group, None);
        assert_eq!(pom.artifact.as_deref(), Some("lib"));
        assert_eq!(
            pom.parent,
            Some((
                "org.example".to_owned(),
                "parent".to_owned(),
                "3".to_owned()
            ))
        );
        assert_eq!(pom.properties["guava.version"], "33.0");
        assert_eq!(pom.managed[0].version.as_deref(), Some("${guava.version}"));
        assert_eq!(pom.dependencies.len(), 2);
        assert_eq!(pom.dependencies[0].version, None);
        assert_eq!(
            pom.dependencies[0].exclusions,
            ["com.google.code.findbugs:jsr305"]
        );
        assert_eq!(pom.dependencies[1].scope.as_deref(), Some("test"));
    }
}
