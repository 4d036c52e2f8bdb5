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

/// The people of the summarised thread, Ada among them.
const THREAD_PEOPLE: [(&str, &str); 4] = [
    ("Ada Lovelace", "ada@example.com"),
    ("Grace Hopper", "grace@example.org"),
    ("Alan Turing", "alan@example.net"),
    ("Katherine Johnson", "kj@example.com"),
];

/// The subject of the summarised thread.
pub(crate) const THREAD_SUBJECT: &str = "Planning the spring offsite in Lisbon";

/// Sentences a thread message is written from; each message starts at another one, so no two
/// bodies are alike.
const THREAD_SENTENCES: [&str; 16] = [
    "I called the hotel near the river this morning and they can hold twenty rooms for us \
     until the end of the month if we send the deposit by Friday.",
    "The conference room on the top floor seats thirty people, has two projectors and a \
     terrace we could use for the coffee breaks if the weather is kind.",
    "Finance asked us to keep the whole trip under forty thousand euros, travel included, \
     and to book refundable fares wherever the difference is small.",
    "Several people in the Berlin team would rather take the train to Paris and fly from \
     there, which adds a day but saves them an early connection.",
    "For the first evening I suggest the restaurant in Alfama that Katherine recommended \
     last year; they need the final head count a week in advance.",
    "We still have not decided whether the workshop on the roadmap comes on the first or \
     the second day, and that changes what the speakers need to prepare.",
    "Alan offered to run the session on the new deployment pipeline, but he needs a room \
     with good network access and a long table for the laptops.",
    "The agency sent a second quote for the boat trip on the Tagus, slightly cheaper, but \
     it starts at four in the afternoon, right in the middle of the last session.",
    "Please add your dietary requirements to the shared sheet before Wednesday, otherwise \
     the caterer will plan for the standard menu and vegetarian options only.",
    "I would keep Thursday afternoon free so that people can see the city, since the last \
     offsite was criticised for having no time at all outside the meeting rooms.",
    "Grace pointed out that the dates overlap with the public holiday in Portugal, so some \
     museums and shops will be closed and the airport will be busier than usual.",
    "The visa question only concerns two colleagues, and both have already received their \
     invitation letters from the office in Lisbon.",
    "If we move the whole event by one week the hotel price drops by about twelve percent, \
     but three of the speakers have told us they cannot come then.",
    "Could someone check whether the venue has step-free access everywhere, including the \
     terrace and the toilets on the top floor?",
    "I have drafted an agenda with three blocks per day and long breaks in between, and I \
     will share it as soon as we agree on the order of the workshops.",
    "Let us make a decision on the dates in Monday's call, so that I can confirm the hotel, \
     the venue and the restaurant on the same day.",
];

/// Message `index` of the summarised thread: plain text from one of the thread's people to the
/// others, `In-Reply-To` the message before it, with a body of 200 to 400 words and the first
/// lines of the previous message quoted, as mail clients do.
pub(crate) fn thread_message(index: usize) -> Vec<u8> {
    let (name, address) = THREAD_PEOPLE[index % THREAD_PEOPLE.len()];
    let to: Vec<String> = THREAD_PEOPLE
        .iter()
        .filter(|(_, other)| *other != address)
        .map(|(name, address)| format!("\"{name}\" <{address}>"))
        .collect();
    let subject = if index == 0 {
        THREAD_SUBJECT.to_owned()
    } else {
        format!("Re: {THREAD_SUBJECT}")
    };
    let mut head = format!(
        "From: \"{name}\" <{address}>\r\nTo: {}\r\nSubject: {subject}\r\nDate: Tue, {:02} Nov \
         2026 {:02}:{:02}:00 +0000\r\nMessage-ID: <offsite{index:03}@bench.example>\r\n",
        to.join(", "),
        1 + index / 12,
        8 + index % 12,
        (index * 7) % 60
    );
    if index > 0 {
        head.push_str(&format!(
            "In-Reply-To: <offsite{:03}@bench.example>\r\nReferences: \
             <offsite000@bench.example>\r\n",
            index - 1
        ));
    }
    head.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
    let words = 200 + (index * 53) % 201;
    let mut body = format!(
        "Hi all,\r\n\r\nMessage {} of our planning, from {name}.",
        index + 1
    );
    let mut written = body.split_whitespace().count();
    let mut sentence = index * 5;
    while written < words {
        let next = THREAD_SENTENCES[sentence % THREAD_SENTENCES.len()];
        // A new paragraph every three sentences.
        body.push_str(if (sentence - index * 5).is_multiple_of(3) {
            "\r\n\r\n"
        } else {
            " "
        });
        body.push_str(next);
        written += next.split_whitespace().count();
        sentence += 1;
    }
    body.push_str(&format!("\r\n\r\nThanks,\r\n{name}\r\n"));
    if index > 0 {
        let (previous, _) = THREAD_PEOPLE[(index - 1) % THREAD_PEOPLE.len()];
        let quoted = THREAD_SENTENCES[((index - 1) * 5) % THREAD_SENTENCES.len()];
        body.push_str(&format!(
            "\r\nOn Tue, {previous} wrote:\r\n> Hi all,\r\n>\r\n> {quoted}\r\n"
        ));
    }
    format!("{head}{body}").into_bytes()
}
