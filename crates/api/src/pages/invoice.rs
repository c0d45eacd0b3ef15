//! The invoice page (printable, §14 UStG, German with English beside it) and a document's downloads.

use super::layout::{attachment, de, eur, page, page_error};
use super::session::{as_bearer, who};
use crate::error::ApiError;
use crate::routes::invoices::{document, invoice_csv, invoice_json, invoice_xml};
use crate::AppState;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use domain::billing::invoice::InvoiceDoc;
use maud::{html, Markup};

pub(super) async fn invoice_download(
    State(s): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let Ok(Path((number, format))) = path else {
        return page_error(ApiError::not_found());
    };
    let h = as_bearer(&headers);
    let n = || Ok(Path(number.clone()));
    let r = match format.as_str() {
        "xrechnung.xml" => invoice_xml(State(s), h, n()).await,
        "invoice.csv" => invoice_csv(State(s), h, n()).await,
        "invoice.json" => invoice_json(State(s), h, n()).await.map(IntoResponse::into_response),
        _ => Err(ApiError::not_found()),
    };
    match r {
        Ok(r) => attachment(r, &format!("{number}-{format}")),
        Err(e) => page_error(e),
    }
}

pub(super) async fn invoice_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    number: Result<Path<String>, PathRejection>,
) -> Response {
    let h = as_bearer(&headers);
    let Ok(Path(number)) = number else {
        return page_error(ApiError::not_found());
    };
    let caller = match who(&s, &h).await {
        Ok(c) => c,
        Err(e) => return page_error(e),
    };
    match document(&s, &h, &number).await {
        Ok(d) => page(&d.number, Some(&caller), invoice_markup(&d)),
        Err(e) => page_error(e),
    }
}

/// The invoice as a person reads it: what §14 UStG asks of an invoice (both parties' names and
/// addresses, the seller's tax number and VAT id, date, number, the service and its period,
/// net per rate, rate, tax, gross, the reason for any exemption, the corrected invoice) in
/// German with English beside it, on an A4 page when printed.
fn invoice_markup(d: &InvoiceDoc) -> Markup {
    use domain::billing::reference::VatTreatment;
    let credit = d.type_code == 381;
    let title = if credit { "Rechnungskorrektur · Credit note" } else { "Rechnung · Invoice" };
    let s = &d.seller;
    let b = &d.buyer;
    html! {
        article.invoice {
            header.parties {
                div.seller {
                    p.from { (s.legal_name) " · " (s.street) " · " (s.postal_code) " " (s.city) }
                    address.buyer {
                        (b.legal_name) br; (b.street) br; (b.postal_code) " " (b.city) br; (b.country)
                    }
                }
                div.meta {
                    h1 { (title) }
                    dl {
                        dt { "Nummer · Number" } dd #invoice-number { (d.number) }
                        dt { "Datum · Date" } dd { (d.issue_date.format("%d.%m.%Y")) }
                        dt { "Leistungszeitraum · Service period" } dd { (d.period.first_day().format("%d.%m.%Y")) " – " (d.period.last_day().format("%d.%m.%Y")) }
                        dt { "Kunde · Customer" } dd { (d.tenant_id) }
                        @if !b.buyer_reference.is_empty() { dt { "Ihre Referenz · Your reference" } dd { (b.buyer_reference) } }
                        @if let Some(v) = &b.vat_id { dt { "USt-IdNr. Kunde · Customer VAT id" } dd { (v) } }
                        @if let Some(c) = &d.corrects {
                            dt { "Korrigiert · Corrects" } dd #corrects { (c.number) " vom " (c.issue_date.format("%d.%m.%Y")) }
                        }
                    }
                }
            }
            table.lines {
                thead { tr { th { "Pos." } th { "Leistung · Service" } th.num { "Menge · Qty" } th { "Einheit" } th.num { "Preis · Price" } th.num { "Netto · Net" } } }
                tbody {
                    @for l in &d.lines {
                        tr {
                            td { (l.line_no) }
                            td { (l.description) @if l.late { br; small { "Nachberechnung für " (l.period) " · late usage of " (l.period) } } }
                            td.num { (de(l.quantity, 6).trim_end_matches('0').trim_end_matches(',')) }
                            td { "GPU-h" }
                            td.num { (eur(l.unit_price)) }
                            td.num { (eur(l.net)) }
                        }
                    }
                }
                tfoot {
                    tr { th colspan="5" { "Summe netto · Net total" } td.num #net-total { (eur(d.net_total)) } }
                    tr {
                        th colspan="5" {
                            "Umsatzsteuer · VAT "
                            @if let Some(r) = d.vat.rate { (de(r, 0)) " %" } @else { "(" (d.vat.category) ")" }
                            " auf · on " (eur(d.vat.taxable))
                        }
                        td.num #vat-total { (eur(d.vat_total)) }
                    }
                    tr.gross { th colspan="5" { "Gesamtbetrag · Total" } td.num #gross-total { (eur(d.gross_total)) } }
                }
            }
            @match d.vat_treatment {
                VatTreatment::ReverseCharge => p.vatnote { "Steuerschuldnerschaft des Leistungsempfängers · Reverse charge: taxable where the recipient is established, VAT due from the recipient (Art. 44 and 196 Directive 2006/112/EC)." }
                VatTreatment::NotTaxable => p.vatnote { "Nicht im Inland steuerbare Leistung (§ 3a Abs. 2 UStG) · Not taxable in Germany: place of supply is the customer's country." }
                VatTreatment::Domestic => {}
            }
            @if let Some(reason) = &d.vat.exemption_reason { p.vatnote { (reason) } }
            @for n in &d.notes { p.note { (n) } }
            p.payment {
                @if credit {
                    "Der Betrag wird Ihnen erstattet · The amount will be refunded to you."
                } @else {
                    "Zahlbar bis · Due by " strong { (d.due_date.format("%d.%m.%Y")) } " auf · to IBAN " (s.iban) ", Verwendungszweck · reference " (d.number) "."
                }
            }
            footer.seller-details {
                p { (s.legal_name) " · " (s.street) " · " (s.postal_code) " " (s.city) " · " (s.country) }
                p { "USt-IdNr. " (s.vat_id) " · Steuernummer " (s.tax_number) " · IBAN " (s.iban) }
                p { (s.contact_name) " · " (s.contact_phone) " · " (s.contact_email) }
                @if let Some(legal) = s.legal_information() { p #seller-register { (legal) } }
            }
        }
        p.noprint.downloads {
            a href={"/ui/invoices/" (d.number) "/download/xrechnung.xml"} { "XRechnung (XML)" } " · "
            a href={"/ui/invoices/" (d.number) "/download/invoice.csv"} { "CSV" } " · "
            a href={"/ui/invoices/" (d.number) "/download/invoice.json"} { "JSON" }
        }
    }
}
