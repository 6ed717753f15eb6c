//! Realistic synthetic interactions for demos and benchmarks: Spanish and English
//! customer-service replies, plausible agents and customers, typification codes, and a few
//! large HTML bodies (≈2.5 KB per row on average). The same arguments give the same rows:
//! a ChaCha generator seeded from `--seed` and the operation's name, and `conn_id`s derived
//! from the arguments, so seeding twice only finds duplicates.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use voxtrail_wire::{Chat12RowRef, IngestSummary};

use crate::domain::{Interaction, Operation, WallClock};
use crate::store::{InsertOutcome, Store, StoreResult};

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct SeedSpec {
    pub count: u64,
    pub days: u32,
    pub until: WallClock,
    pub seed: u64,
}

/// Rows committed per transaction while seeding.
const COMMIT_EVERY: u64 = 100_000;

/// Rows handed from the generator thread to the writer at a time.
const HANDOFF_ROWS: usize = 512;

/// Generates and stores the rows, reporting progress after each commit. Generation runs on its
/// own thread, so it overlaps with SQLite's work on the calling thread.
pub fn run(
    store: &Store,
    op: &Operation,
    spec: SeedSpec,
    mut progress: impl FnMut(u64),
) -> StoreResult<IngestSummary> {
    let mut summary = IngestSummary {
        inserted: 0,
        duplicates: 0,
    };
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Interaction>>(8);
    let mut generator = Generator::new(op, spec);
    let producer = std::thread::spawn(move || {
        let mut i = 0u64;
        while i < spec.count {
            let n = (spec.count - i).min(HANDOFF_ROWS as u64);
            let batch: Vec<Interaction> = (i..i + n).map(|k| generator.next_row(k)).collect();
            i += n;
            if tx.send(batch).is_err() {
                return; // the writer stopped on an error
            }
        }
    });
    let mut batches = rx.into_iter();
    let mut done = 0u64;
    while done < spec.count {
        let mut sink = store.begin_synthetic(op.id)?;
        let batch_end = (done + COMMIT_EVERY).min(spec.count);
        while done < batch_end {
            // Whole handed-over batches: a commit may hold up to HANDOFF_ROWS more rows than
            // COMMIT_EVERY.
            let Some(batch) = batches.next() else { break };
            for outcome in sink.insert_batch(&batch)? {
                match outcome {
                    InsertOutcome::Inserted => summary.inserted += 1,
                    // A conn_id from the same arguments carries the same content, so a
                    // "conflict" here means the operation already holds other data under that
                    // id: skip it.
                    InsertOutcome::Duplicate | InsertOutcome::Conflict => summary.duplicates += 1,
                }
            }
            done += batch.len() as u64;
        }
        sink.commit()?;
        progress(done);
        if done < batch_end {
            break; // the generator ended early (it panicked); report what was stored
        }
    }
    drop(batches);
    if producer.join().is_err() {
        return Err(crate::store::StoreError::Corrupt(
            "the row generator failed".into(),
        ));
    }
    Ok(summary)
}

/// A deterministic row generator.
pub struct Generator {
    rng: ChaCha8Rng,
    spec: SeedSpec,
    start: chrono::NaiveDateTime,
    span_secs: i64,
    agents: Vec<Agent>,
    domain: String,
    body: String,
    to: String,
    subject: String,
}

struct Agent {
    id: String,
    name: String,
    email: String,
    spanish: bool,
}

impl Generator {
    pub fn new(op: &Operation, spec: SeedSpec) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in op.name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed ^ h);
        let slug: String = op
            .name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(20)
            .collect::<String>()
            .to_ascii_lowercase();
        let domain = format!(
            "{}.contact-center.co",
            if slug.is_empty() { "ops" } else { &slug }
        );
        let n_agents = 24 + (rng.random::<u32>() % 24) as usize;
        let agents = (0..n_agents)
            .map(|i| {
                let spanish = rng.random_bool(0.65);
                let first = pick(&mut rng, if spanish { FIRST_ES } else { FIRST_EN });
                let last = pick(&mut rng, if spanish { LAST_ES } else { LAST_EN });
                Agent {
                    id: format!("{}", 1000 + i),
                    name: format!("{first} {last}"),
                    email: format!("{}.{}@{domain}", ascii_lower(first), ascii_lower(last)),
                    spanish,
                }
            })
            .collect();
        let end = spec.until.to_naive();
        let span_secs = i64::from(spec.days) * 86_400;
        Self {
            rng,
            spec,
            start: end - chrono::Duration::seconds(span_secs),
            span_secs,
            agents,
            domain,
            body: String::with_capacity(64 * 1024),
            to: String::with_capacity(256),
            subject: String::with_capacity(256),
        }
    }

    /// Row `i` of `count`: times rise with `i`, spread over the window.
    pub fn next_row(&mut self, i: u64) -> Interaction {
        let rng = &mut self.rng;
        let frac = (i as f64 + rng.random::<f64>()) / self.spec.count.max(1) as f64;
        let offset = ((frac * self.span_secs as f64) as i64).min(self.span_secs);
        let date = WallClock::from_naive(self.start + chrono::Duration::seconds(offset));
        let agent = &self.agents[rng.random_range(0..self.agents.len())];
        let spanish = if rng.random_bool(0.85) {
            agent.spanish
        } else {
            !agent.spanish
        };

        self.to.clear();
        let recipients = if rng.random_bool(0.1) { 2 } else { 1 };
        for r in 0..recipients {
            if r > 0 {
                self.to.push_str("; ");
            }
            let first = pick(rng, if spanish { FIRST_ES } else { FIRST_EN });
            let last = pick(rng, if spanish { LAST_ES } else { LAST_EN });
            let n: u32 = rng.random_range(1..999);
            self.to.push_str(&format!(
                "{}.{}{n}@{}",
                ascii_lower(first),
                ascii_lower(last),
                pick(rng, CUSTOMER_DOMAINS)
            ));
        }
        let case: u32 = rng.random_range(100_000..999_999);
        let (code, code_desc) = *pick(rng, if spanish { CODES_ES } else { CODES_EN });
        self.subject.clear();
        self.subject.push_str(&format!(
            "{} #{case} - {}",
            pick(rng, if spanish { SUBJECT_ES } else { SUBJECT_EN }),
            code_desc
        ));

        self.body.clear();
        let customer = pick(rng, if spanish { FIRST_ES } else { FIRST_EN });
        if rng.random_bool(0.01) {
            html_body(rng, &mut self.body, spanish, customer, case);
        } else {
            let (greet, paras, close) = if spanish {
                (GREET_ES, PARAS_ES, CLOSE_ES)
            } else {
                (GREET_EN, PARAS_EN, CLOSE_EN)
            };
            self.body
                .push_str(&pick(rng, greet).replace("{name}", customer));
            self.body.push_str("\n\n");
            let n = rng.random_range(6..13);
            for _ in 0..n {
                self.body.push_str(pick_str(rng, paras));
                self.body.push_str("\n\n");
            }
            self.body.push_str(pick_str(rng, close));
            self.body.push_str("\n\n");
            self.body.push_str(&agent.name);
            self.body.push('\n');
            self.body.push_str(if spanish {
                "Servicio al cliente · "
            } else {
                "Customer care · "
            });
            self.body.push_str(&self.domain);
        }
        let conn_id = format!("sd{}-{}-{}", self.spec.seed, self.spec.until.as_i64(), i);
        let date_str = date.to_string();
        let mut json = Vec::with_capacity(self.body.len() + 512);
        Chat12RowRef {
            conn_id: &conn_id,
            agent_id: &agent.id,
            agent_name: &agent.name,
            channel: "email",
            from: &agent.email,
            to: &self.to,
            subject: &self.subject,
            body: &self.body,
            date: &date_str,
            cod_act: code,
            description_cod_act: code_desc,
        }
        .write_json(&mut json);
        Interaction {
            conn_id,
            date,
            json,
        }
    }
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn pick_str(rng: &mut ChaCha8Rng, items: &[&'static str]) -> &'static str {
    items[rng.random_range(0..items.len())]
}

fn ascii_lower(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'á' | 'Á' => 'a',
            'é' | 'É' => 'e',
            'í' | 'Í' => 'i',
            'ó' | 'Ó' => 'o',
            'ú' | 'Ú' | 'ü' => 'u',
            'ñ' | 'Ñ' => 'n',
            c => c.to_ascii_lowercase(),
        })
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

fn html_body(rng: &mut ChaCha8Rng, out: &mut String, spanish: bool, customer: &str, case: u32) {
    let (title, cols) = if spanish {
        (
            "Estado de su solicitud",
            ["Fecha", "Concepto", "Valor", "Estado"],
        )
    } else {
        ("Your request status", ["Date", "Item", "Amount", "Status"])
    };
    out.push_str("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px}</style></head><body>");
    out.push_str(&format!(
        "<h2>{title} #{case}</h2><p>{customer},</p><table><tr>"
    ));
    for c in cols {
        out.push_str(&format!("<th>{c}</th>"));
    }
    out.push_str("</tr>");
    let rows = rng.random_range(150..400);
    for r in 0..rows {
        let amount: u32 = rng.random_range(1_000..9_999_999);
        out.push_str(&format!(
            "<tr><td>2026-{:02}-{:02}</td><td>{}</td><td>${amount}</td><td>{}</td></tr>",
            1 + r % 12,
            1 + r % 28,
            pick(rng, if spanish { ITEMS_ES } else { ITEMS_EN }),
            pick(
                rng,
                if spanish {
                    &["Pagado", "Pendiente", "En revisión"][..]
                } else {
                    &["Paid", "Pending", "Under review"][..]
                }
            ),
        ));
    }
    out.push_str("</table><p>");
    out.push_str(pick_str(rng, if spanish { PARAS_ES } else { PARAS_EN }));
    out.push_str("</p></body></html>");
}

const FIRST_ES: &[&str] = &[
    "María",
    "José",
    "Luis",
    "Ana",
    "Carlos",
    "Lucía",
    "Andrés",
    "Camila",
    "Juan",
    "Valentina",
    "Sofía",
    "Diego",
    "Daniela",
    "Felipe",
    "Natalia",
    "Sebastián",
    "Paula",
    "Jorge",
    "Laura",
    "Nicolás",
    "Mónica",
    "Julián",
    "Catalina",
    "Óscar",
];
const LAST_ES: &[&str] = &[
    "García",
    "Rodríguez",
    "Martínez",
    "López",
    "González",
    "Pérez",
    "Sánchez",
    "Ramírez",
    "Torres",
    "Gómez",
    "Díaz",
    "Vargas",
    "Castro",
    "Rojas",
    "Moreno",
    "Muñoz",
    "Jiménez",
    "Herrera",
    "Ospina",
    "Restrepo",
];
const FIRST_EN: &[&str] = &[
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Emily", "Daniel", "Sarah", "Chris", "Karen", "Kevin", "Laura", "Brian", "Megan",
];
const LAST_EN: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson",
    "Taylor", "Thomas", "Moore", "Martin", "Clark", "Walker", "Young",
];
const CUSTOMER_DOMAINS: &[&str] = &[
    "gmail.com",
    "hotmail.com",
    "outlook.es",
    "yahoo.com",
    "empresa.com.co",
    "correo.co",
    "icloud.com",
    "live.com",
    "acme-logistics.com",
    "une.net.co",
];
const CODES_ES: &[(&str, &str)] = &[
    ("101", "Consulta de saldo"),
    ("102", "Reclamo por facturación"),
    ("103", "Solicitud de cancelación"),
    ("104", "Cambio de plan"),
    ("105", "Soporte técnico"),
    ("106", "Seguimiento de pedido"),
    ("107", "Devolución de producto"),
    ("108", "Actualización de datos"),
    ("109", "Felicitación"),
    ("110", "Queja por atención"),
];
const CODES_EN: &[(&str, &str)] = &[
    ("201", "Balance inquiry"),
    ("202", "Billing dispute"),
    ("203", "Cancellation request"),
    ("204", "Plan change"),
    ("205", "Technical support"),
    ("206", "Order tracking"),
    ("207", "Product return"),
    ("208", "Account update"),
];
const SUBJECT_ES: &[&str] = &[
    "Re: Caso",
    "RE: Solicitud",
    "Respuesta a su radicado",
    "Seguimiento caso",
    "Re: Re: Ticket",
];
const SUBJECT_EN: &[&str] = &[
    "Re: Case",
    "RE: Request",
    "Update on ticket",
    "Follow-up on case",
    "Re: Re: Ticket",
];
const GREET_ES: &[&str] = &[
    "Estimado(a) {name}:",
    "Hola {name},",
    "Buenos días, {name}.",
    "Apreciado(a) {name}:",
];
const GREET_EN: &[&str] = &[
    "Dear {name},",
    "Hi {name},",
    "Hello {name},",
    "Good morning {name},",
];
const CLOSE_ES: &[&str] = &[
    "Quedamos atentos a cualquier inquietud adicional.\nCordialmente,",
    "Gracias por comunicarse con nosotros.\nSaludos,",
    "Si necesita algo más, puede responder a este correo.\nAtentamente,",
];
const CLOSE_EN: &[&str] = &[
    "Please let us know if there is anything else we can help with.\nKind regards,",
    "Thank you for contacting us.\nBest regards,",
    "If you need anything else, simply reply to this email.\nSincerely,",
];
const ITEMS_ES: &[&str] = &[
    "Cargo fijo mensual",
    "Consumo adicional",
    "Ajuste a favor",
    "Intereses de mora",
    "Equipo en cuotas",
];
const ITEMS_EN: &[&str] = &[
    "Monthly fee",
    "Extra usage",
    "Credit adjustment",
    "Late fee",
    "Device installment",
];
const PARAS_ES: &[&str] = &[
    "Le informamos que hemos recibido su solicitud y que nuestro equipo ya se encuentra revisando la información enviada. En un plazo máximo de tres (3) días hábiles recibirá una respuesta definitiva a través de este mismo canal.",
    "Hemos validado su cuenta y encontramos que el cobro adicional corresponde al consumo registrado fuera del plan contratado durante el periodo facturado. Adjuntamos el detalle para su revisión.",
    "Para continuar con el proceso le solicitamos amablemente adjuntar una copia de su documento de identidad y la factura más reciente, con el fin de verificar la titularidad del servicio.",
    "Su pedido fue despachado desde nuestro centro de distribución y se encuentra en tránsito. El número de guía le permitirá consultar el estado del envío en la página de la transportadora.",
    "Lamentamos los inconvenientes ocasionados. Hemos escalado su caso al área técnica, que realizará una visita de diagnóstico en la franja horaria que usted seleccionó.",
    "De acuerdo con nuestras políticas, la devolución del dinero se verá reflejada en el mismo medio de pago utilizado en la compra dentro de los próximos quince (15) días calendario.",
    "Le recordamos que puede gestionar sus solicitudes las 24 horas del día desde nuestra aplicación móvil, donde también encontrará el historial completo de sus casos.",
    "Confirmamos que los datos de contacto fueron actualizados correctamente. A partir de este momento todas las notificaciones llegarán a la nueva dirección registrada.",
    "Agradecemos sus comentarios sobre la atención recibida; los compartiremos con el equipo para seguir mejorando nuestra calidad de servicio.",
    "Su solicitud de cambio de plan quedó programada para el próximo ciclo de facturación. No se generarán cargos por cancelación anticipada.",
];
const PARAS_EN: &[&str] = &[
    "We have received your request and our team is already reviewing the information you sent. You will receive a final answer through this same channel within three (3) business days.",
    "We checked your account and found that the additional charge corresponds to usage recorded outside your plan during the billing period. The detailed breakdown is attached for your review.",
    "To continue with the process, please attach a copy of your ID and your most recent invoice so that we can verify the account holder.",
    "Your order has left our distribution center and is in transit. The tracking number lets you follow the shipment on the carrier's website.",
    "We are sorry for the inconvenience. Your case has been escalated to our technical team, who will schedule a diagnostic visit in the time slot you selected.",
    "In line with our policy, the refund will be credited to the same payment method used for the purchase within the next fifteen (15) calendar days.",
    "Remember that you can manage your requests 24/7 from our mobile app, where you will also find the full history of your cases.",
    "We confirm that your contact details were updated successfully. From now on every notification will be sent to the new address on file.",
    "Thank you for your feedback about the service you received; we will share it with the team to keep improving.",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{OperationName, OperationTz};

    fn op(name: &str) -> Operation {
        Operation {
            id: 1,
            name: OperationName::parse(name).unwrap(),
            tz: OperationTz::parse("America/Bogota").unwrap(),
            licenses: 10,
        }
    }

    fn spec() -> SeedSpec {
        SeedSpec {
            count: 2000,
            days: 7,
            until: WallClock::parse_compact("20261001120000").unwrap(),
            seed: 42,
        }
    }

    #[test]
    fn same_arguments_same_rows_and_times_rise() {
        let mut a = Generator::new(&op("acme"), spec());
        let mut b = Generator::new(&op("acme"), spec());
        let mut last = WallClock::parse_compact("20000101000000").unwrap();
        let mut bytes = 0usize;
        for i in 0..2000 {
            let (x, y) = (a.next_row(i), b.next_row(i));
            assert_eq!(x, y);
            assert!(x.date >= last);
            assert!(x.date <= spec().until);
            last = x.date;
            bytes += x.json.len();
            let row: voxtrail_wire::Chat12Row = serde_json::from_slice(&x.json).unwrap();
            assert_eq!(row.channel, "email");
        }
        let avg = bytes / 2000;
        assert!((2200..2900).contains(&avg), "average row {avg} bytes");
        let mut c = Generator::new(&op("other"), spec());
        assert_ne!(
            c.next_row(0).json,
            Generator::new(&op("acme"), spec()).next_row(0).json
        );
    }
}
