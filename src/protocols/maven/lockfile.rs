//! What `granary warm` fetches for a Maven project. A `pom.xml` pins only its own
//! dependencies, so granary resolves it first (as `POST /-/api/REPO/resolve` does);
//! then, for every resolved artifact, its POM and the file its packaging makes (a
//! jar for `jar`, `bundle`, `maven-plugin` and the like, the same extension for
//! `war`, `ear` and `rar`, none for `pom`), with the classifier the node names.
//! Parents and imported BOMs are fetched by the resolution itself.

use std::sync::Arc;

use super::dependencies::pom_path;
use super::layout;
use super::pom::Pom;
use crate::protocols::warm::WarmFetch;
use crate::protocols::WarmPlan;

/// Whether `file_name` is a project POM, which granary resolves before warming.
#[must_use]
pub fn needs_resolution(file_name: &str) -> bool {
    file_name == "pom.xml" || file_name.ends_with(".pom")
}

/// Maven files are warmed through a resolution only.
///
/// # Errors
/// Always: says which file to give.
pub fn plan(file_name: &str, _text: &str) -> WarmPlan {
    Err(format!(
        "`{file_name}`: a Maven repository is warmed from a project's `pom.xml`, which \
         granary resolves first"
    ))
}

/// The extension of the file a packaging makes; `None` for `pom`.
fn extension(packaging: &str) -> Option<&'static str> {
    match packaging {
        "pom" => None,
        "war" => Some("war"),
        "ear" => Some("ear"),
        "rar" => Some("rar"),
        _ => Some("jar"),
    }
}

/// The fetches for resolved `(group:artifact[:classifier], version)` pins.
///
/// # Errors
/// A pin that does not name Maven coordinates.
pub fn plan_of_pins(pins: &[(String, String)]) -> WarmPlan {
    pins.iter()
        .map(|(name, version)| {
            let mut parts = name.split(':');
            let (Some(group), Some(artifact), classifier, None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(format!(
                    "`{name}`: expected `groupId:artifactId[:classifier]`"
                ));
            };
            layout::metadata_path_of(&format!("{group}:{artifact}"))?;
            if version.is_empty() || version.contains(['/', '\\']) || version.starts_with('.') {
                return Err(format!("`{name}` `{version}`: not a version"));
            }
            let pom = pom_path(group, artifact, version);
            let stem = pom.trim_end_matches(".pom").to_owned();
            let suffix = classifier.map(|c| format!("-{c}")).unwrap_or_default();
            Ok(WarmFetch::new(pom).then(Arc::new(move |body: &[u8]| {
                let pom = Pom::parse(body)?;
                let packaging = pom.packaging.as_deref().unwrap_or("jar");
                Ok(extension(packaging)
                    .map(|ext| WarmFetch::new(format!("{stem}{suffix}.{ext}")))
                    .into_iter()
                    .collect())
            })))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_fetches_its_pom_which_names_the_file_its_packaging_makes() {
        let plan = plan_of_pins(&[
            ("org.rx:rx-a".to_owned(), "1.1".to_owned()),
            ("org.rx:rx-native:linux".to_owned(), "1.0".to_owned()),
        ])
        .expect("plan");
        assert_eq!(plan[0].path, "org/rx/rx-a/1.1/rx-a-1.1.pom");
        let expand = plan[1].expand.as_ref().expect("expands");
        let named = expand(b"<project><artifactId>rx-native</artifactId></project>").expect("POM");
        assert_eq!(
            named[0].path,
            "org/rx/rx-native/1.0/rx-native-1.0-linux.jar"
        );
        let expand = plan[0].expand.as_ref().expect("expands");
        let pom_only = b"<project><packaging>pom</packaging></project>";
        assert!(expand(pom_only).expect("POM").is_empty());
        let war = b"<project><packaging>war</packaging></project>";
        assert_eq!(
            expand(war).expect("POM")[0].path,
            "org/rx/rx-a/1.1/rx-a-1.1.war"
        );
    }

    #[test]
    fn pins_that_are_not_coordinates_are_refused() {
        for (name, version) in [("rx-a", "1.0"), ("a:b:c:d", "1.0"), ("org.rx:rx-a", "../x")] {
            assert!(
                plan_of_pins(&[(name.to_owned(), version.to_owned())]).is_err(),
                "{name} {version}"
            );
        }
        assert!(needs_resolution("pom.xml") && !needs_resolution("Cargo.lock"));
        assert!(plan("pom.xml", "")
            .expect_err("resolved first")
            .contains("resolves"));
    }
}
