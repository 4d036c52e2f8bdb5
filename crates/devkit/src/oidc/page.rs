//! The login page `/authorize` shows: the authorization request carried along in hidden fields,
//! and an email and a name to sign in as.

use std::collections::HashMap;

/// Escapes text for an HTML attribute or element.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The login form for the authorization request `params`, posting back to `/authorize`.
pub(super) fn login(params: &HashMap<String, String>) -> String {
    let mut names: Vec<&String> = params.keys().collect();
    names.sort();
    let hidden: String = names
        .into_iter()
        .filter(|name| !matches!(name.as_str(), "email" | "name"))
        .map(|name| {
            format!(
                "    <input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
                escape(name),
                escape(&params[name])
            )
        })
        .collect();
    let hint = params.get("login_hint").map_or("", String::as_str);
    let client = params.get("client_id").map_or("", String::as_str);
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Sign in — assistd development provider</title>
  <style>
    body {{ font-family: system-ui, sans-serif; max-width: 26rem; margin: 4rem auto; padding: 0 1rem; }}
    label {{ display: block; margin-top: 1rem; }}
    input[type=email], input[type=text] {{ width: 100%; padding: .4rem; font-size: 1rem; }}
    button {{ margin-top: 1.5rem; padding: .5rem 1.2rem; font-size: 1rem; }}
    .note {{ color: #a33; font-size: .9rem; }}
  </style>
</head>
<body>
  <h1>Sign in</h1>
  <p class="note">assistd development provider: any email signs in, without a password.
  For development only.</p>
  <p>Signing in to <code>{client}</code>.</p>
  <form method="post" action="/authorize">
{hidden}    <label>Email <input type="email" name="email" value="{hint}" required autofocus></label>
    <label>Name <input type="text" name="name" placeholder="Ada Lovelace"></label>
    <button type="submit">Sign in</button>
  </form>
</body>
</html>
"#,
        client = escape(client),
        hint = escape(hint),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_carried_in_escaped_hidden_fields() {
        let params = HashMap::from([
            ("state".to_owned(), "a\"><script>".to_owned()),
            ("client_id".to_owned(), "web".to_owned()),
        ]);
        let html = login(&params);
        assert!(html.contains(r#"name="state" value="a&quot;&gt;&lt;script&gt;""#));
        assert!(!html.contains("<script>"));
        assert!(html.contains(r#"name="email""#));
    }
}
