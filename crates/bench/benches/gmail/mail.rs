//! The bench's mailbox: raw RFC 2822 messages from a few templates (plain text,
//! multipart/alternative, HTML only, an attachment, an ISO-8859-1 body), each with a serial
//! word, so the synced copy has the shapes and the vocabulary of real mail.

/// The words a search scenario queries: one and two words, common and rare.
pub(crate) const QUERIES: [&str; 6] = [
    "invoice",
    "quarterly report",
    "parcel",
    "friday lunch",
    "serial04242",
    "hello ada",
];

const PEOPLE: [(&str, &str); 5] = [
    ("Grace Hopper", "grace@example.org"),
    ("Alan Turing", "alan@example.net"),
    ("Katherine Johnson", "kj@example.com"),
    ("Edsger Dijkstra", "ewd@example.nl"),
    ("The Shop", "noreply@shop.example"),
];

const TOPICS: [&str; 8] = [
    "Quarterly report",
    "Lunch on Friday",
    "Your parcel has shipped",
    "Invoice for November",
    "Flight itinerary",
    "Meeting notes",
    "Password reset requested",
    "Weekly newsletter",
];

/// Message `index`: one of five templates in turn.
pub(crate) fn generated(index: usize) -> Vec<u8> {
    let serial = format!("serial{index:05}");
    let (name, address) = PEOPLE[index % PEOPLE.len()];
    let topic = TOPICS[index % TOPICS.len()];
    let head = format!(
        "From: \"{name}\" <{address}>\r\nTo: Ada Lovelace <ada@example.com>\r\n\
         Subject: {topic} {serial}\r\nDate: Mon, {:02} Nov 2026 {:02}:{:02}:00 +0000\r\n\
         Message-ID: <{serial}@bench.example>\r\nMIME-Version: 1.0\r\n",
        1 + index % 28,
        index % 24,
        index % 60
    );
    let body = format!(
        "Hello Ada,\r\n\r\nA note about {topic} ({serial}). The details follow below, with \
         the figures we discussed and the next steps for the team.\r\n\r\n{}\r\n\r\nBest \
         regards,\r\n{name}\r\n",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. "
            .repeat(1 + index % 6)
    );
    let raw = match index % 5 {
        0 => format!("{head}Content-Type: text/plain; charset=us-ascii\r\n\r\n{body}"),
        1 => format!(
            "{head}Content-Type: multipart/alternative; boundary=\"b-{serial}\"\r\n\r\n\
             --b-{serial}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n\
             --b-{serial}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>{}\
             </p></body></html>\r\n--b-{serial}--\r\n",
            body.replace("\r\n", "<br>")
        ),
        2 => format!(
            "{head}Content-Type: text/html; charset=utf-8\r\n\r\n<html><head><style>p {{ \
             color: #333 }}</style></head><body><table><tr><td><p>{}</p><a \
             href=\"https://shop.example/track\">Track your parcel</a></td></tr></table>\
             </body></html>\r\n",
            body.replace("\r\n", "<br>")
        ),
        3 => format!(
            "{head}Content-Type: multipart/mixed; boundary=\"m-{serial}\"\r\n\r\n\
             --m-{serial}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{body}\r\n\
             --m-{serial}\r\nContent-Type: application/pdf; name=\"{serial}.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"{serial}.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IK\r\n--m-{serial}--\r\n"
        ),
        _ => format!(
            "{head}Content-Type: text/plain; charset=iso-8859-1\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe aus M=FCnchen!\r\n\
             \r\n{}",
            body.replace('=', "=3D")
        ),
    };
    raw.into_bytes()
}
