//! The application's name and folder on the host, as every step that touches a host derives them: one
//! function, so deploy-remote, rollback and sync-secrets can never disagree about where the app lives.

use crate::error::{Error, Result};

/// The default app name for a repository `owner/name`: the name, lowercased, with every character a
/// compose project name cannot hold (`.` above all, as in `Acme/Shop.Web`) turned into `-`. `None` when
/// nothing usable is left.
pub fn default_app_name(repository: &str) -> Option<String> {
    let name = repository.trim().rsplit('/').next()?;
    let name: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' { c } else { '-' })
        .collect();
    let name = name.trim_start_matches(['-', '_']).to_string();
    (!name.is_empty() && validate_app_name(&name).is_ok()).then_some(name)
}

/// `app-name` and `app-dir` as every step reads them: the name defaults to [`default_app_name`] of
/// `GITHUB_REPOSITORY`, the directory to `/opt/<app-name>`; the directory must be absolute and is
/// returned without a trailing `/`.
/// `app-name` and `app-dir`, the inputs of every step that works in an app dir on a host.
#[derive(Debug, Clone, clap::Args)]
pub struct AppArgs {
    /// Compose project name; names the state directory [default: the repository name]
    #[arg(long, env = "INPUT_APP_NAME")]
    pub app_name: Option<String>,

    /// Where the app lives on the host [default: /opt/<app-name>]
    #[arg(long, env = "INPUT_APP_DIR")]
    pub app_dir: Option<String>,
}

impl AppArgs {
    /// The app's name and folder, with their defaults ([`resolve_app`]).
    pub fn resolve(self) -> Result<(String, String)> {
        resolve_app(self.app_name, self.app_dir)
    }
}

pub fn resolve_app(app_name: Option<String>, app_dir: Option<String>) -> Result<(String, String)> {
    let from_repo = || default_app_name(&std::env::var("GITHUB_REPOSITORY").ok()?);
    let app = app_name.filter(|n| !n.is_empty()).or_else(from_repo).ok_or_else(|| {
        Error::bad_input("input `app-name` is required outside GitHub Actions").hint("pass `--app-name myapp`")
    })?;
    validate_app_name(&app)?;
    let dir = app_dir.filter(|d| !d.trim().is_empty()).unwrap_or_else(|| format!("/opt/{app}"));
    Ok((app, crate::input::absolute_path(dir.trim(), "app-dir")?))
}

/// A compose project name: lowercase letters, digits, `_` and `-`, starting with a letter or digit
/// (what both compose v1 and v2 accept unchanged).
pub fn validate_app_name(name: &str) -> Result<()> {
    let ok = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && name.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(Error::bad_input(format!("`app-name` {name:?} is not a valid compose project name"))
            .hint("use lowercase letters, digits, `-` and `_`, starting with a letter or digit"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_name_becomes_a_compose_project_name() {
        assert_eq!(default_app_name("Acme/Shop.Web").as_deref(), Some("shop-web"));
        assert_eq!(default_app_name("acme/app").as_deref(), Some("app"));
        assert_eq!(default_app_name("o/My_App.v2").as_deref(), Some("my_app-v2"));
        assert_eq!(default_app_name("o/.dotfiles").as_deref(), Some("dotfiles"));
        assert_eq!(default_app_name("o/"), None);
        assert_eq!(default_app_name("o/..."), None);
    }

    #[test]
    fn the_name_and_folder_come_from_the_inputs_first() {
        let (app, dir) = resolve_app(Some("web".into()), Some("/srv/web/".into())).unwrap();
        assert_eq!((app.as_str(), dir.as_str()), ("web", "/srv/web"));
        let (app, dir) = resolve_app(Some("web".into()), None).unwrap();
        assert_eq!((app.as_str(), dir.as_str()), ("web", "/opt/web"));
        assert!(resolve_app(Some("Web".into()), None).is_err(), "not a compose project name");
        assert!(resolve_app(Some("web".into()), Some("srv/web".into())).is_err(), "a relative app-dir");
    }
}
