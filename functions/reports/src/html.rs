//! The campaign report as one self-contained HTML page (no external asset: styles inline, charts
//! as inline SVG drawn by plotters), readable on a phone: headline numbers, the outcome funnel
//! (dialed → answered → human → success), outcomes per hour and the duration histogram.

use domain::{
    CallDisposition,
    report::{CallNumbers, CampaignReport, DailyReport, HourlyCalls, percent},
};
use plotters::{
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 300;
/// Axis and legend text: the charts are drawn 640 wide and shown at a phone's width.
const LABEL_SIZE: u32 = 18;
const INK: RGBColor = RGBColor(31, 41, 55);
const ANSWERED: RGBColor = RGBColor(22, 163, 74);
const MACHINE: RGBColor = RGBColor(217, 119, 6);
const UNANSWERED: RGBColor = RGBColor(107, 114, 128);
const FAILED: RGBColor = RGBColor(220, 38, 38);

/// Text safe inside HTML.
fn escape(text: &str) -> String {
    text.chars().fold(String::with_capacity(text.len()), |mut out, c| {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
        out
    })
}

/// A chart drawn into an SVG string; a drawing error leaves a note instead of the chart.
fn svg(id: &str, title: &str, draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<(), String>) -> String {
    let mut out = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string()).and_then(|()| draw(&root)).and_then(|()| root.present().map_err(|e| e.to_string()))
    };
    match drawn {
        Ok(()) => format!(
            "<figure id=\"{id}\"><figcaption>{}</figcaption>{}</figure>",
            escape(title),
            out.replacen("<svg ", &format!("<svg role=\"img\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" "), 1)
        ),
        Err(e) => {
            tracing::error!(chart = id, error = %e, "a report chart could not be drawn");
            format!("<figure id=\"{id}\"><figcaption>{}</figcaption><p>chart unavailable</p></figure>", escape(title))
        }
    }
}

/// The label style of an axis, anchored at `pos`.
fn label_style(pos: Pos) -> TextStyle<'static> {
    ("sans-serif", LABEL_SIZE).into_font().color(&INK).pos(pos)
}

/// Which of `n` slots get a label: at most `most`, evenly spread, the first always.
fn labelled(n: usize, most: usize) -> impl Fn(usize) -> bool {
    let every = n.div_ceil(most.max(1)).max(1);
    move |i| i % every == 0
}

/// Slot `i` of a category axis spans `[i, i + 1)`: plain numbers rather than plotters' segmented
/// coordinates, which give a single slot no width (a campaign that ran within one hour drew nothing).
fn slot(i: usize) -> f64 {
    i as f64
}

fn funnel(report: &CampaignReport) -> String {
    let c = &report.calls;
    let successful = c.success_rate.map_or(0, |r| (r * c.evaluated as f64).round() as u64);
    let steps =
        [("dialed", c.dialed, INK), ("answered", c.answered, MACHINE), ("human", c.human, ANSWERED), ("success", successful, ANSWERED)];
    svg("funnel", "Outcome funnel", |root| {
        let top = steps.iter().map(|s| s.1).max().unwrap_or(0).max(1) as f64;
        let n = steps.len();
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(110)
            .build_cartesian_2d(0f64..top * 1.15, 0f64..slot(n))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", LABEL_SIZE))
            .disable_y_mesh()
            .y_labels(0)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(|e| e.to_string())?;
        // read top down: the first step is the top bar
        let row = |i: usize| slot(n - 1 - i);
        chart
            .draw_series(
                steps
                    .iter()
                    .enumerate()
                    .map(|(i, (_, count, colour))| Rectangle::new([(0.0, row(i) + 0.15), (*count as f64, row(i) + 0.85)], colour.filled())),
            )
            .map_err(|e| e.to_string())?;
        // each step's name left of the axis, its count just past the end of its bar
        chart
            .draw_series(steps.iter().enumerate().map(|(i, (name, _, _))| {
                EmptyElement::at((0.0, row(i) + 0.5))
                    + Text::new(name.to_string(), (-8, 0), label_style(Pos::new(HPos::Right, VPos::Center)))
            }))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(steps.iter().enumerate().map(|(i, (_, count, _))| {
                EmptyElement::at((*count as f64, row(i) + 0.5))
                    + Text::new(count.to_string(), (6, 0), label_style(Pos::new(HPos::Left, VPos::Center)))
            }))
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Dispositions drawn together, bottom to top.
const GROUPS: [(&str, RGBColor, &[CallDisposition]); 4] = [
    ("answered", ANSWERED, &[CallDisposition::AnsweredHuman, CallDisposition::DoNotCall]),
    ("voicemail", MACHINE, &[CallDisposition::Voicemail]),
    ("no answer / busy", UNANSWERED, &[CallDisposition::NoAnswer, CallDisposition::Busy]),
    ("failed / other", FAILED, &[CallDisposition::Failed, CallDisposition::Canceled, CallDisposition::OutsideWindow]),
];

/// Vertical bars over named slots, with the slots' names under them.
fn column_chart<'a, DB: DrawingBackend + 'a>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    names: &[String],
    top: u64,
    headroom: f64,
) -> Result<ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordu64>>, String> {
    let n = names.len().max(1);
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..slot(n), 0u64..((top.max(1) as f64) * headroom).ceil() as u64 + 1)
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().label_style(("sans-serif", LABEL_SIZE)).disable_x_mesh().x_labels(0).draw().map_err(|e| e.to_string())?;
    let shown = labelled(names.len(), 8);
    chart
        .draw_series(names.iter().enumerate().filter(|(i, _)| shown(*i)).map(|(i, name)| {
            EmptyElement::at((slot(i) + 0.5, 0)) + Text::new(name.clone(), (0, 8), label_style(Pos::new(HPos::Center, VPos::Top)))
        }))
        .map_err(|e| e.to_string())?;
    Ok(chart)
}

fn per_hour(hours: &[HourlyCalls]) -> String {
    let span = hours.first().zip(hours.last()).map(|(a, b)| b.hour - a.hour);
    // a run over more than a day names the day of each hour
    let format = if span.is_some_and(|s| s >= chrono::TimeDelta::days(1)) { "%d %Hh" } else { "%H:00" };
    let names: Vec<String> = hours.iter().map(|h| h.hour.format(format).to_string()).collect();
    svg("per-hour", "Outcomes per hour (UTC)", |root| {
        let top = hours.iter().map(|h| h.calls).max().unwrap_or(0);
        // headroom for the legend above the tallest bar
        let mut chart = column_chart(root, &names, top, 1.75)?;
        // thin bars get no gap, or three days of hours would vanish into their margins
        let gap = if hours.len() > 24 { 0.0 } else { 0.1 };
        for (g, (label, colour, members)) in GROUPS.iter().enumerate() {
            let bars = hours.iter().enumerate().map(|(i, h)| {
                let count = |ds: &[CallDisposition]| ds.iter().map(|d| h.by_disposition.get(d).copied().unwrap_or(0)).sum::<u64>();
                let below: u64 = GROUPS[..g].iter().map(|(_, _, ds)| count(ds)).sum();
                Rectangle::new([(slot(i) + gap, below), (slot(i) + 1.0 - gap, below + count(members))], colour.filled())
            });
            chart
                .draw_series(bars)
                .map_err(|e| e.to_string())?
                .label(*label)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", LABEL_SIZE))
            .background_style(WHITE.mix(0.8))
            .border_style(INK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

fn durations(report: &CampaignReport) -> String {
    let buckets = &report.calls.duration_histogram;
    let names: Vec<String> = buckets
        .iter()
        .map(|b| match b.to_seconds {
            Some(to) => format!("{}–{to}", b.from_seconds),
            None => format!("{}+", b.from_seconds),
        })
        .collect();
    svg("durations", "Call durations (seconds)", |root| {
        let top = buckets.iter().map(|b| b.calls).max().unwrap_or(0);
        let mut chart = column_chart(root, &names, top, 1.1)?;
        chart
            .draw_series(
                buckets.iter().enumerate().map(|(i, b)| Rectangle::new([(slot(i) + 0.1, 0), (slot(i) + 0.9, b.calls)], INK.filled())),
            )
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

fn card(label: &str, value: String) -> String {
    format!("<div class=\"card\"><span>{}</span><strong>{}</strong></div>", escape(label), escape(&value))
}

/// The cards of a set of calls' headline numbers.
fn call_cards(c: &CallNumbers) -> String {
    let by_presence = c
        .by_presence
        .iter()
        .map(|(level, n)| card(&format!("answer rate, {}", level.label()), format!("{} of {}", percent(n.answer_rate), n.dialed)));
    [
        card("calls finished", c.finished.to_string()),
        card("answer rate", percent(c.answer_rate)),
        by_presence.collect(),
        card("human rate", percent(c.human_rate)),
        card("machine rate", percent(c.machine_rate)),
        card("abandonment", format!("{} ({} unknown)", percent(c.abandonment_rate), c.abandonment_unknown)),
        card("success", percent(c.success_rate)),
        card("talk time", format!("{} min", c.talk_seconds / 60)),
        card("median call", c.duration_seconds.p50.map_or("—".into(), |s| format!("{s} s"))),
        card("cost", c.cost.describe(c.finished)),
        card("per connected call", c.cost.per_connected_call.map_or("—".into(), |m| format!("{:.4} {}", m.amount(), c.cost.currency))),
    ]
    .concat()
}

/// A whole page: its title, a line under it, and its content.
fn page(title: &str, meta: &str, content: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<link rel=\"icon\" href=\"data:,\">\
<title>{title} — outdial report</title>\
<style>body{{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:960px;padding:16px;color:#1f2937}}\
h1{{font-size:1.4rem;margin:0 0 4px}}p.meta{{color:#6b7280;margin:0 0 16px}}\
.cards{{display:grid;grid-template-columns:repeat(auto-fill,minmax(140px,1fr));gap:8px;margin-bottom:16px}}\
.card{{border:1px solid #e5e7eb;border-radius:8px;padding:8px}}.card span{{display:block;font-size:.8rem;color:#6b7280}}\
.card strong{{font-size:1.1rem}}figure{{margin:0 0 16px}}figcaption{{font-weight:600;margin-bottom:4px}}\
.table{{overflow-x:auto;margin-bottom:16px}}table{{border-collapse:collapse;width:100%}}\
th,td{{padding:4px 8px;border-bottom:1px solid #e5e7eb;text-align:right;white-space:nowrap}}th:first-child,td:first-child{{text-align:left}}\
svg{{width:100%;height:auto}}</style></head><body>\
<h1>{title}</h1><p class=\"meta\">{meta}</p>{content}</body></html>\n",
        title = escape(title),
        meta = escape(meta),
    )
}

/// The campaign's page.
pub fn render(report: &CampaignReport) -> String {
    let c = &report.calls;
    let cards = [
        call_cards(c),
        card("contacts", report.contacts.total.to_string()),
        card("attempts per contact", report.contacts.attempts_per_contact.map_or("—".into(), |a| format!("{a:.1}"))),
    ]
    .concat();
    let meta = format!(
        "Campaign {} · {} · generated {}",
        report.campaign_id,
        report.status.as_str(),
        report.generated_at.format("%Y-%m-%d %H:%M UTC")
    );
    let content =
        format!("<section class=\"cards\">{cards}</section>{}{}{}", funnel(report), per_hour(&c.calls_per_hour), durations(report));
    page(&report.name, &meta, &content)
}

/// An organisation's daily report: the day's totals, a row per campaign, outcomes per hour.
pub fn render_daily(report: &DailyReport) -> String {
    let n = |v: u64| v.to_string();
    let row = |name: &str, c: &CallNumbers| {
        [
            escape(name),
            n(c.finished),
            n(c.answered),
            percent(c.answer_rate),
            n(c.human),
            n(c.machine),
            n(c.failed),
            percent(c.abandonment_rate),
            format!("{} min", c.talk_seconds / 60),
            c.cost.describe(c.finished),
            percent(c.success_rate),
        ]
        .map(|cell| format!("<td>{cell}</td>"))
        .concat()
    };
    let header = ["campaign", "calls", "answered", "answer rate", "human", "machine", "failed", "abandonment", "talk", "cost", "success"]
        .map(|h| format!("<th>{h}</th>"))
        .concat();
    let rows: String = report.campaigns.iter().map(|r| format!("<tr>{}</tr>", row(&r.name, &r.calls))).collect();
    let table = if report.campaigns.is_empty() {
        "<p>No calls ended that day.</p>".to_string()
    } else {
        format!(
            "<div class=\"table\"><table id=\"campaigns\"><thead><tr>{header}</tr></thead><tbody>{rows}</tbody>\
<tfoot><tr>{}</tr></tfoot></table></div>",
            row("All campaigns", &report.totals)
        )
    };
    let meta = format!(
        "{} ({}) · {}generated {}",
        report.date,
        report.time_zone,
        if report.complete { "" } else { "the day so far · " },
        report.generated_at.format("%Y-%m-%d %H:%M UTC")
    );
    let content =
        format!("<section class=\"cards\">{}</section>{table}{}", call_cards(&report.totals), per_hour(&report.totals.calls_per_hour));
    page(&format!("Daily report — {}", report.date), &meta, &content)
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn names_are_escaped() {
        assert_eq!(escape("<script>\"x\" & 'y'</script>"), "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;");
    }
}
