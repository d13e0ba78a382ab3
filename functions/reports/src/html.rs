//! The campaign report as one self-contained HTML page (no external asset: styles inline, charts
//! as inline SVG drawn by plotters), readable on a phone: headline numbers, the outcome funnel
//! (dialed → answered → human → success), outcomes per hour and the duration histogram.

use domain::{
    CallDisposition,
    report::{CallNumbers, CampaignReport, DailyReport, HourlyCalls},
};
use plotters::prelude::*;

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

fn percent(rate: Option<f64>) -> String {
    rate.map_or("—".into(), |r| format!("{:.1} %", r * 100.0))
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

/// `n` bar slots (at least one): plotters segments a range's end as a slot of its own.
fn slots(n: usize) -> plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordusize> {
    (0..n.max(1) - 1).into_segmented()
}

fn funnel(report: &CampaignReport) -> String {
    let c = &report.calls;
    let successful = c.success_rate.map_or(0, |r| (r * c.evaluated as f64).round() as u64);
    let steps =
        [("dialed", c.dialed, INK), ("answered", c.answered, MACHINE), ("human", c.human, ANSWERED), ("success", successful, ANSWERED)];
    svg("funnel", "Outcome funnel", |root| {
        let top = steps.iter().map(|s| s.1).max().unwrap_or(0).max(1);
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(110)
            .build_cartesian_2d(0u64..top + top / 10 + 1, slots(steps.len()))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", LABEL_SIZE))
            .disable_y_mesh()
            .y_label_formatter(&|y| match y {
                SegmentValue::CenterOf(i) => steps.get(*i).map_or(String::new(), |s| s.0.to_string()),
                _ => String::new(),
            })
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(steps.iter().enumerate().map(|(i, (_, n, colour))| {
                let mut bar = Rectangle::new([(0, SegmentValue::Exact(i)), (*n, SegmentValue::Exact(i + 1))], colour.filled());
                bar.set_margin(6, 6, 0, 0);
                bar
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

fn per_hour(hours: &[HourlyCalls]) -> String {
    svg("per-hour", "Outcomes per hour (UTC)", |root| {
        let top = hours.iter().map(|h| h.calls).max().unwrap_or(0).max(1);
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            // headroom for the legend above the tallest bar
            .build_cartesian_2d(slots(hours.len()), 0u64..top + top * 3 / 4 + 1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", LABEL_SIZE))
            .disable_x_mesh()
            .x_labels(hours.len().clamp(1, 12))
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => hours.get(*i).map_or(String::new(), |h| h.hour.format("%d %Hh").to_string()),
                _ => String::new(),
            })
            .draw()
            .map_err(|e| e.to_string())?;
        for (g, (label, colour, members)) in GROUPS.iter().enumerate() {
            let bars = hours.iter().enumerate().map(|(i, h)| {
                let count = |ds: &[CallDisposition]| ds.iter().map(|d| h.by_disposition.get(d).copied().unwrap_or(0)).sum::<u64>();
                let below: u64 = GROUPS[..g].iter().map(|(_, _, ds)| count(ds)).sum();
                let mut bar = Rectangle::new(
                    [(SegmentValue::Exact(i), below), (SegmentValue::Exact(i + 1), below + count(members))],
                    colour.filled(),
                );
                bar.set_margin(0, 0, 3, 3);
                bar
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
    svg("durations", "Call durations (seconds)", |root| {
        let top = buckets.iter().map(|b| b.calls).max().unwrap_or(0).max(1);
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(slots(buckets.len()), 0u64..top + top / 10 + 1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", LABEL_SIZE))
            .disable_x_mesh()
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => buckets.get(*i).map_or(String::new(), |b| match b.to_seconds {
                    Some(to) => format!("{}–{to}", b.from_seconds),
                    None => format!("{}+", b.from_seconds),
                }),
                _ => String::new(),
            })
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                Histogram::vertical(&chart).style(INK.filled()).margin(6).data(buckets.iter().enumerate().map(|(i, b)| (i, b.calls))),
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
    [
        card("calls finished", c.finished.to_string()),
        card("answer rate", percent(c.answer_rate)),
        card("human", percent(c.human_rate)),
        card("machine", percent(c.machine_rate)),
        card("abandonment", format!("{} ({} unknown)", percent(c.abandonment_rate), c.abandonment_unknown)),
        card("success", percent(c.success_rate)),
        card("talk time", format!("{} min", c.talk_seconds / 60)),
        card("median call", c.duration_seconds.p50.map_or("—".into(), |s| format!("{s} s"))),
        card("cost", format!("{} {}", c.cost.total, c.cost.currency)),
        card("per connected call", c.cost.per_connected_call.map_or("—".into(), |m| format!("{m} {}", c.cost.currency))),
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
            format!("{} {}", c.cost.total, c.cost.currency),
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
