//! Final answers: extraction from a solution's text and comparison after normalisation.
//!
//! Extraction tries, in order: the last `\boxed{…}` (or `\fbox{…}`), the last `#### …` line,
//! "Final Answer: The final answer is …", the last "The answer is …", and else the last number in
//! the text. A boxed or `####` answer is taken as written; a phrase that is not a number itself
//! but contains numbers yields its last number ("8 apples" → `8`, "12 + 30 = 42" → `42`).
//!
//! Reasoning models write numbered Markdown steps (`1. **…**`, `### Step 2:`), `\[ … \]` display
//! LaTeX and `\boxed{}`. Step numbers are never taken for the answer by the last-number fallback
//! (a line that starts with `2.` or `Step 2:` numbers a step), and a marked answer that is a
//! description rather than a value ("the answer is the sum of the balloons",
//! `\boxed{\text{total apples}}`: no digit and at least two words) is *no answer*: `None`, not
//! the phrase, and not some other number of the text either.
//!
//! Normalisation drops thousands separators, `$`, `%`, units of LaTeX
//! (`\text{…}`, `\!`, `\,`), trailing `.0`, surrounding punctuation; `\frac{a}{b}` and `a/b` are
//! fractions. Two answers are equivalent when both are numbers within 1e-6 (relative), or when
//! their normalised texts are equal.
//!
//! Nothing here panics, whatever the input (fuzzed: `fuzz/fuzz_targets/answer.rs`).

/// The final answer of `solution`, as written (trimmed), or `None` if there is none.
pub fn extract(solution: &str) -> Option<String> {
    match marked(solution) {
        Marked::Answer(a) => Some(a),
        Marked::Description => None,
        Marked::Nothing => {
            let n = last_number(solution)?.trim().to_string();
            (!normalize(&n).is_empty()).then_some(n)
        }
    }
}

/// What the explicit markers of a solution say.
enum Marked {
    /// No marker.
    Nothing,
    /// A marker followed by a description, not a value.
    Description,
    /// A marked answer, as written (trimmed).
    Answer(String),
}

/// The final answer that `solution` states with an explicit marker (`\boxed{…}`, `####`, "the
/// answer is", "answer:"), or `None`: [`extract`] without its last-number fallback. Tree search
/// uses it to decide that a step ends the solution.
pub fn explicit(solution: &str) -> Option<String> {
    match marked(solution) {
        Marked::Answer(a) => Some(a),
        Marked::Nothing | Marked::Description => None,
    }
}

fn marked(solution: &str) -> Marked {
    // Explicit markers: their contents are the answer as written.
    let explicit = last_boxed(solution).or_else(|| after_marker(solution, "####"));
    let answer = match explicit {
        Some(a) => {
            // "8 \text{ apples}" is the number with a unit; "x^{2}+1" stays as written.
            if numeric_value(&a).is_none() && words(&a) > 0 {
                last_number(&a).map_or(a.clone(), str::to_string)
            } else {
                a
            }
        }
        None => {
            let Some(p) = after_phrase(solution, "final answer: the final answer is")
                .or_else(|| after_phrase(solution, "the final answer is"))
                .or_else(|| after_phrase(solution, "the answer is"))
                .or_else(|| after_phrase(solution, "answer:"))
            else {
                return Marked::Nothing;
            };
            // "1/2", "$1,200" are numbers as a whole; "8 apples" or "12 + 30 = 42" end with
            // theirs; "blue" is an answer too.
            let p = strip_phrase_tail(&p);
            if numeric_value(&p).is_some() {
                p.trim_end_matches([',', '.', ';', ':', '!', '?'])
                    .to_string()
            } else {
                last_number(&p).map_or(p.clone(), str::to_string)
            }
        }
    };
    let answer = answer.trim().to_string();
    if normalize(&answer).is_empty() {
        Marked::Nothing
    } else if !answer.chars().any(|c| c.is_ascii_digit()) && words(&answer) >= 2 {
        Marked::Description
    } else {
        Marked::Answer(answer)
    }
}

/// The number of words of two or more letters in `text`, LaTeX commands (`\frac`, `\text`) not
/// counted: "the sum of the balloons" has 4, `\frac{x}{2}` none.
fn words(text: &str) -> usize {
    let mut count = 0;
    let mut run = 0usize;
    let mut after_backslash = false;
    let mut prev = ' ';
    for c in text.chars().chain([' ']) {
        if c.is_alphabetic() {
            if run == 0 {
                after_backslash = prev == '\\';
            }
            run += 1;
        } else {
            if run >= 2 && !after_backslash {
                count += 1;
            }
            run = 0;
        }
        prev = c;
    }
    count
}

/// A canonical form of an answer: numbers as their shortest decimal (`1,200.00` → `1200`,
/// `3/4` → `0.75`), other text lower-cased with surrounding punctuation and spacing removed.
pub fn normalize(answer: &str) -> String {
    let cleaned = clean(answer);
    match parse_number(&cleaned) {
        Some(v) => format_number(v),
        None => cleaned.to_lowercase(),
    }
}

/// The numeric value of an answer, if it is a number (after normalisation).
pub fn numeric_value(answer: &str) -> Option<f64> {
    parse_number(&clean(answer))
}

/// Whether two answers mean the same: numerically within 1e-6 (relative), or equal normalised
/// text.
pub fn equivalent(a: &str, b: &str) -> bool {
    match (numeric_value(a), numeric_value(b)) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0),
        (None, None) => {
            let (x, y) = (normalize(a), normalize(b));
            !x.is_empty() && x == y
        }
        _ => false,
    }
}

/// A free-text final answer (a rewritten sentence, a phrase): the rest of the line after the
/// last "answer:" or "the answer is" (case-insensitive), trimmed of spaces and of one pair of
/// surrounding quotes or `**`; `None` when there is no marker or nothing follows it. Unlike
/// [`extract`], it never falls back to a number found in the text.
pub fn extract_text(solution: &str) -> Option<String> {
    let find = |phrase: &str| -> Option<usize> {
        let bytes = solution.as_bytes();
        let p = phrase.as_bytes();
        (0..=bytes.len().checked_sub(p.len())?)
            .rev()
            .find(|&i| bytes[i..i + p.len()].eq_ignore_ascii_case(p))
            .map(|i| i + p.len())
    };
    let start = [find("answer:"), find("the answer is")]
        .into_iter()
        .flatten()
        .max()?;
    let rest = solution.get(start..)?.trim_start_matches([':', ' ', '\t']);
    let line = rest.lines().next().unwrap_or("").trim();
    let line = line.trim_start_matches("**").trim_end_matches("**").trim();
    let unquoted = ['"', '\'', '“', '”']
        .iter()
        .find_map(|&q| {
            line.strip_prefix(q)
                .and_then(|l| l.strip_suffix(['"', '\'', '“', '”']))
        })
        .unwrap_or(line)
        .trim();
    (!unquoted.is_empty()).then(|| unquoted.to_string())
}

/// Whether two free-text answers are the same after lower-casing, collapsing spaces and
/// dropping surrounding punctuation.
pub fn text_equivalent(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace())
            .to_lowercase()
    };
    let (x, y) = (norm(a), norm(b));
    !x.is_empty() && x == y
}

/// The contents of the last `\boxed{…}` or `\fbox{…}`, braces balanced.
fn last_boxed(text: &str) -> Option<String> {
    let start = ["\\boxed{", "\\fbox{"]
        .iter()
        .filter_map(|m| text.rfind(m).map(|i| i + m.len()))
        .max()?;
    let mut depth = 1usize;
    for (i, c) in text[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(text[start..start + i].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// The rest of the line after the last `marker`.
fn after_marker(text: &str, marker: &str) -> Option<String> {
    let i = text.rfind(marker)? + marker.len();
    let line = text[i..].lines().next().unwrap_or("");
    let line = line.trim();
    (!line.is_empty()).then(|| line.to_string())
}

/// The rest of the sentence after the last case-insensitive occurrence of `phrase`.
fn after_phrase(text: &str, phrase: &str) -> Option<String> {
    let lower = text.to_lowercase();
    // Lower-casing can change byte lengths outside ASCII; only use positions that line up.
    if lower.len() != text.len() {
        return after_phrase_ascii(text, phrase);
    }
    let i = lower.rfind(phrase)? + phrase.len();
    text.get(i..).and_then(sentence)
}

fn after_phrase_ascii(text: &str, phrase: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let p = phrase.as_bytes();
    if p.len() > bytes.len() {
        return None;
    }
    let i = (0..=bytes.len() - p.len())
        .rev()
        .find(|&i| bytes[i..i + p.len()].eq_ignore_ascii_case(p))?;
    text.get(i + p.len()..).and_then(sentence)
}

/// The text up to the end of its line, stopping at a sentence end (a `.` not inside a number).
fn sentence(rest: &str) -> Option<String> {
    let rest = rest.trim_start_matches([':', ' ', '\t']);
    let line = rest.lines().next().unwrap_or("");
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut end = line.len();
    for (k, &(i, c)) in chars.iter().enumerate() {
        if matches!(c, '.' | '!' | '?' | ';') {
            let next_is_digit = chars.get(k + 1).is_some_and(|&(_, n)| n.is_ascii_digit());
            let prev_is_digit = k > 0 && chars[k - 1].1.is_ascii_digit();
            if !(c == '.' && prev_is_digit && next_is_digit) {
                end = i;
                break;
            }
        }
    }
    let s = line[..end].trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Drops a trailing "I hope it is correct" and similar.
fn strip_phrase_tail(phrase: &str) -> String {
    let lower = phrase.to_lowercase();
    match lower.find("i hope it is correct") {
        Some(i) if lower.len() == phrase.len() => phrase[..i].to_string(),
        _ => phrase.to_string(),
    }
}

/// Removes LaTeX and currency decoration, then surrounding punctuation and spaces.
fn clean(answer: &str) -> String {
    let mut s = answer.trim().to_string();
    // \text{...} and \mathrm{...} keep their contents.
    for cmd in ["\\text{", "\\mathrm{", "\\textbf{", "\\mbox{"] {
        while let Some(i) = s.find(cmd) {
            match s[i + cmd.len()..].find('}') {
                Some(j) => {
                    let inner = s[i + cmd.len()..i + cmd.len() + j].to_string();
                    s.replace_range(i..i + cmd.len() + j + 1, &inner);
                }
                None => {
                    s.replace_range(i..i + cmd.len(), "");
                }
            }
        }
    }
    // \frac{a}{b} and \dfrac{a}{b} → a/b
    for cmd in ["\\dfrac{", "\\tfrac{", "\\frac{"] {
        while let Some(i) = s.find(cmd) {
            let rest = &s[i + cmd.len()..];
            let parsed = rest.find('}').and_then(|j| {
                let num = &rest[..j];
                let after = rest.get(j + 1..)?;
                let den_body = after.strip_prefix('{')?;
                let k = den_body.find('}')?;
                Some((
                    format!("{num}/{}", &den_body[..k]),
                    cmd.len() + j + 1 + 1 + k + 1,
                ))
            });
            match parsed {
                Some((frac, len)) => s.replace_range(i..i + len, &frac),
                None => s.replace_range(i..i + cmd.len(), ""),
            }
        }
    }
    for junk in [
        "\\$", "$", "\\%", "%", "\\!", "\\,", "\\;", "{,}", "\\left", "\\right",
    ] {
        s = s.replace(junk, "");
    }
    let s = s.trim_matches(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '.' | ',' | ';' | ':' | '!' | '?' | '"' | '\'' | '`' | '*'
            )
    });
    let s = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(s);
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses `-1,234.50`, `+3`, `.5`, `3/4`, `-2/3` (after [`clean`]).
fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Some((num, den)) = s.split_once('/') {
        let (n, d) = (parse_decimal(num.trim())?, parse_decimal(den.trim())?);
        return (d != 0.0).then(|| n / d).filter(|v| v.is_finite());
    }
    parse_decimal(s)
}

fn parse_decimal(s: &str) -> Option<f64> {
    let (sign, digits) = match s.strip_prefix('-').or_else(|| s.strip_prefix('−')) {
        Some(rest) => (-1.0, rest),
        None => (1.0, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty() {
        return None;
    }
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    // Thousands separators only in groups of three: "1,234" but not "1,2".
    let int_plain: String = if int.contains(',') {
        let groups: Vec<&str> = int.split(',').collect();
        let ok = !groups[0].is_empty()
            && groups[0].len() <= 3
            && groups[1..].iter().all(|g| g.len() == 3);
        if !ok {
            return None;
        }
        groups.concat()
    } else {
        int.to_string()
    };
    if int_plain.is_empty() && frac.is_empty() {
        return None;
    }
    if !int_plain.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let v: f64 = format!(
        "{}.{}",
        if int_plain.is_empty() {
            "0"
        } else {
            &int_plain
        },
        if frac.is_empty() { "0" } else { frac }
    )
    .parse()
    .ok()?;
    Some(sign * v).filter(|v| v.is_finite())
}

fn format_number(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    if (v - v.round()).abs() < 1e-9 && v.abs() < 1e15 {
        return format!("{}", v.round() as i64);
    }
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// The last number-like token in `text`: an optional sign, digits with optional thousands
/// separators, an optional decimal part, an optional `/denominator`.
fn last_number(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut last = None;
    let mut i = 0;
    while i < bytes.len() {
        let starts_number = bytes[i].is_ascii_digit()
            || (bytes[i] == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit));
        if !starts_number {
            i += 1;
            continue;
        }
        let mut start = i;
        if start > 0 && bytes[start - 1] == b'-' {
            let before = start.checked_sub(2).map(|k| bytes[k]);
            if before.is_none_or(|b| !b.is_ascii_alphanumeric()) {
                start -= 1;
            }
        }
        let mut j = i;
        loop {
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            // A separator or point continues the number only when a digit follows.
            if j + 1 < bytes.len()
                && matches!(bytes[j], b',' | b'.' | b'/')
                && bytes[j + 1].is_ascii_digit()
            {
                j += 1;
                continue;
            }
            break;
        }
        if !numbers_a_step(text, start, j) {
            last = Some(&text[start..j]);
        }
        i = j.max(i + 1);
    }
    last.map(|n| n.trim_end_matches(['.', ',']))
}

/// Whether the number at `text[start..end]` numbers a step: `2.` or `2)` opening a line (after
/// spaces, `#` or `*`), or the `2` of `Step 2`.
fn numbers_a_step(text: &str, start: usize, end: usize) -> bool {
    let number = &text[start..end];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let line_start = text[..start].rfind('\n').map_or(0, |k| k + 1);
    let prefix = text[..start][line_start..]
        .trim_matches(|c: char| c.is_whitespace() || c == '#' || c == '*');
    let after = &text[end..];
    if prefix.len() >= 4 && prefix.is_char_boundary(prefix.len() - 4) {
        let tail = &prefix[prefix.len() - 4..];
        if tail.eq_ignore_ascii_case("step") {
            return true;
        }
    }
    prefix.is_empty()
        && (after.starts_with('.') || after.starts_with(')'))
        && after[1..]
            .chars()
            .next()
            .is_none_or(|c| c.is_whitespace() || c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_answers_are_the_line_after_the_marker_and_never_a_stray_number() {
        let t = "Step 1: swap the clauses.\nAnswer: \"Because it rained, we stayed in.\"\nDone";
        assert_eq!(
            extract_text(t).as_deref(),
            Some("Because it rained, we stayed in.")
        );
        assert_eq!(
            extract_text("There are 3 options. The answer is **a red car**").as_deref(),
            Some("a red car")
        );
        assert_eq!(extract_text("I counted 12 words."), None);
        assert_eq!(extract_text("Answer:   "), None);
        assert_eq!(extract_text("Ünïcödé answer: ça va"), Some("ça va".into()));
        assert!(text_equivalent("The Red Car.", "the  red car"));
        assert!(!text_equivalent("a red car", "a blue car"));
        assert!(!text_equivalent("...", "!"));
    }

    /// (solution text, expected extracted answer's normal form or None)
    const EXTRACT: &[(&str, Option<&str>)] = &[
        ("So the total is \\boxed{42}.", Some("42")),
        ("\\boxed{\\frac{3}{4}}", Some("0.75")),
        ("first \\boxed{1} then \\boxed{2}", Some("2")),
        ("\\boxed{x^{2}+1}", Some("x^{2}+1")),
        ("\\fbox{7}", Some("7")),
        ("He pays 3 * 4 = 12.\n#### 12", Some("12")),
        ("#### 1,200", Some("1200")),
        ("#### $45.00", Some("45")),
        (
            "Final Answer: The final answer is 17. I hope it is correct.",
            Some("17"),
        ),
        (
            "Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.",
            Some("0.5"),
        ),
        ("The answer is 32.", Some("32")),
        ("the answer is: 8 apples", Some("8")),
        ("THE ANSWER IS 5", Some("5")),
        ("So, the answer is $1,234.", Some("1234")),
        ("The answer is 12 + 30 = 42.", Some("42")),
        ("The answer is 3.5 hours.", Some("3.5")),
        ("The answer is -7.", Some("-7")),
        ("The answer is 40%.", Some("40")),
        ("The answer is blue.", Some("blue")),
        ("Answer: 19", Some("19")),
        ("I think 3 and then 4 and finally 5", Some("5")),
        (
            "There were 1,000 people and 250 left, so 750 remain.",
            Some("750"),
        ),
        ("x = 2/3", Some("0.666667")),
        ("It costs $2.50 per pound", Some("2.5")),
        ("version v-2", Some("2")),
        ("no numbers here at all", None),
        ("", None),
        ("\\boxed{", None),
        ("\\boxed{}", None),
        ("####", None),
        ("The answer is", None),
        ("The answer is .", None),
        ("The answer is 4. The answer is 5.", Some("5")),
        ("Result: 3.0", Some("3")),
        ("We get 0.50.", Some("0.5")),
        ("ünïcödé ÄNSWER: the answer is 9", Some("9")),
        ("The answer is 1/0", Some("1/0")),
        ("#### 12\nextra text 99", Some("12")),
        ("**The answer is 64**", Some("64")),
        // The reasoner's style: numbered Markdown steps, display LaTeX, boxed answers.
        (
            "To find the total:\n\n1. **Red balloons**: 5\n2. **Blue balloons**: 3\n\n\\[\n5 + 3 = 8\n\\]\n\nSo, the total is \\(\\boxed{8}\\).",
            Some("8"),
        ),
        ("1. Tom has 4 bags of 3 apples: \\[ 4 \\times 3 = 12 \\]\n\n2.", Some("12")),
        ("### Step 1: Count\n\\[ 7 + 5 = 12 \\]\n### Step 2:", Some("12")),
        ("Step 1: 9 - 4 = 5\nStep 2", Some("5")),
        ("\\[\n\\boxed{15}\n\\]", Some("15")),
        ("The final answer is: \\[ \\boxed{\\frac{3}{4}} \\]", Some("0.75")),
        ("the answer is \\( 42 \\).", Some("42")),
        ("\\boxed{8 \\text{ apples}}", Some("8")),
        ("\\boxed{\\sqrt{2}}", Some("\\sqrt{2}")),
        // A description where a value was asked for is no answer, not the phrase, not a number.
        ("5 + 3 = 8 balloons. The answer is the sum of the balloons.", None),
        ("\\boxed{\\text{the total number of red peaches}}", None),
        ("Final Answer: the total number of red peaches", None),
        ("The answer is the sum of the balloons: 5 + 3 = 8.", Some("8")),
        ("1. First\n2. Second\n3. ", None),
    ];

    #[test]
    fn extraction_table() {
        for &(text, expected) in EXTRACT {
            let got = extract(text).map(|a| normalize(&a));
            assert_eq!(got.as_deref(), expected, "extracting from {text:?}");
        }
    }

    /// (a, b, equivalent?)
    const EQUIV: &[(&str, &str, bool)] = &[
        ("1200", "1,200", true),
        ("$1,200.00", "1200", true),
        ("45%", "45", true),
        ("3.0", "3", true),
        ("0.5", "1/2", true),
        ("\\frac{1}{2}", "0.5", true),
        ("\\dfrac{6}{8}", "3/4", true),
        ("-3", "−3", true),
        ("+3", "3", true),
        ("3.", "3", true),
        ("(7)", "7", false),
        ("\\text{blue}", "Blue", true),
        ("12", "13", false),
        ("12", "12.0001", false),
        ("1,2", "12", false),
        ("abc", "", false),
        ("", "", false),
        ("0.333333", "1/3", true),
        ("5 apples", "5", false),
        ("1/0", "1/0", true),
        ("7", "seven", false),
    ];

    #[test]
    fn equivalence_table() {
        for &(a, b, expected) in EQUIV {
            assert_eq!(equivalent(a, b), expected, "{a:?} vs {b:?}");
            assert_eq!(equivalent(b, a), expected, "{b:?} vs {a:?} (symmetry)");
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        // A deterministic stand-in for the cargo-fuzz target, run with every test suite.
        let pieces = [
            "\\boxed{",
            "}",
            "{",
            "####",
            "The answer is",
            "Final Answer:",
            "1",
            "2,",
            ",",
            ".",
            "/",
            "-",
            "−",
            "$",
            "%",
            "ü",
            "日本",
            "\n",
            " ",
            "\\frac{",
            "\\text{",
            "0",
            "9999999999999999999999",
            "e",
            "I hope it is correct",
            "ANSWER:",
        ];
        let mut state = 0x1234_5678_u64;
        for _ in 0..20_000 {
            let mut s = String::new();
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            let len = (state >> 59) as usize;
            for _ in 0..len {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                s.push_str(pieces[(state >> 33) as usize % pieces.len()]);
            }
            if let Some(a) = extract(&s) {
                let _ = normalize(&a);
                assert!(equivalent(&a, &a), "{a:?} from {s:?}");
            }
        }
    }
}
