#!/usr/bin/env bash
# Mail import: `voxtrail import --format mbox` of a generated sent-mail mbox (50,000 realistic
# messages: plain text, multipart/alternative, PDF attachments, HTML-only, ISO-8859-1 and UTF-8
# encoded words, quoted-printable and base64 bodies, Cc, a few unmapped senders and messages
# without Message-ID) into a fresh, durable SQLite database, against Python's own
# `mailbox.mbox` reading and parsing the same file (headers and text body decoded, nothing
# stored), in the same run. Target (bench/README.md): voxtrail >= 5,000 messages/s.
#
# Environment: VOXTRAIL_BIN (else built), MESSAGES (default 50000), REPS (default 3; the best
# run of each is compared).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MESSAGES=${MESSAGES:-50000}
REPS=${REPS:-3}
VOXTRAIL=$(voxtrail_bin)

DIR="$OUT_DIR/mbox"
mkdir -p "$DIR"
MBOX="$DIR/sent.mbox"
AGENTS="$DIR/agents.csv"
GEN_VERSION=1
KEY="messages=$MESSAGES gen=$GEN_VERSION"

if [ -f "$MBOX" ] && [ -f "$AGENTS" ] && [ "$(cat "$DIR/key" 2>/dev/null)" = "$KEY" ]; then
    log "reusing $MBOX ($KEY)"
else
    log "generating $MESSAGES messages into $MBOX"
    rm -f "$MBOX" "$AGENTS" "$DIR/key"
    python3 - "$MBOX" "$AGENTS" "$MESSAGES" <<'PY'
import random, sys, time
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from datetime import datetime, timedelta, timezone

path, agents_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rnd = random.Random(42)
first = ["Ana", "Luis", "María", "José", "Camila", "Andrés", "Valentina", "Sebastián", "Lucía", "Tomás"]
last = ["Pérez", "Gómez", "Rodríguez", "Martínez", "López", "Hernández", "Díaz", "Muñoz"]
agents = []
with open(agents_path, "w", encoding="utf-8") as f:
    f.write("email,agent_id,agent_name\n")
    for i in range(50):
        name = f"{rnd.choice(first)} {rnd.choice(last)}"
        email = f"agente{i:02d}@contactcenter.co"
        agents.append((email, name))
        f.write(f"{email},{1000 + i},{name}\n")
subjects = ["Cotización de servicios", "Confirmación de su cita", "Recordatorio de pago",
            "Seguimiento a su solicitud Nº {n}", "Respuesta a su reclamación", "Bienvenido a nuestro servicio",
            "Actualización de datos", "Información sobre su pedido {n}", "¿Podemos ayudarle?", "Encuesta de satisfacción ✅"]
paragraphs = [
    "Buenos días, reciba un cordial saludo de parte de nuestro equipo de atención.",
    "Le confirmamos que su solicitud fue recibida y será atendida en un plazo máximo de 48 horas hábiles.",
    "Adjuntamos la información solicitada. Si tiene alguna pregunta adicional, no dude en responder este correo.",
    "El valor pendiente es de $125.000 con fecha límite de pago el próximo viernes.",
    "From now on, your case number will be used in all our communications.",
    "Agradecemos su paciencia y quedamos atentos a cualquier inquietud.",
]
pdf = bytes(rnd.getrandbits(8) for _ in range(3000))
zones = [timezone(timedelta(hours=-5)), timezone.utc, timezone(timedelta(hours=2))]
end = datetime(2026, 10, 8, tzinfo=timezone.utc)
with open(path, "wb") as out:
    for i in range(n):
        unmapped = rnd.random() < 0.02
        email, name = (f"externo{i}@otro.co", "Externo") if unmapped else rnd.choice(agents)
        when = end - timedelta(seconds=rnd.randrange(7 * 86400))
        m = EmailMessage()
        m["From"] = f"{name} <{email}>"
        m["To"] = ", ".join(f"cliente{rnd.randrange(100000)}@correo{rnd.randrange(9)}.com" for _ in range(rnd.choice([1, 1, 1, 2])))
        if rnd.random() < 0.3:
            m["Cc"] = f"supervisor{rnd.randrange(10)}@contactcenter.co"
        m["Subject"] = rnd.choice(subjects).format(n=rnd.randrange(10**6))
        m["Date"] = format_datetime(when.astimezone(rnd.choice(zones)))
        if rnd.random() >= 0.01:
            m["Message-ID"] = f"<{i}.{rnd.getrandbits(48):x}@contactcenter.co>"
        m["MIME-Version"] = "1.0"
        text = "\n\n".join(rnd.sample(paragraphs, rnd.randint(2, 5))) + f"\n\n{name}\nAgente de servicio\n"
        kind = rnd.random()
        charset = "iso-8859-1" if rnd.random() < 0.3 else "utf-8"
        if kind < 0.05:
            m.set_content("<html><body>" + "".join(f"<p>{p}</p>" for p in text.split("\n\n")) + "</body></html>", subtype="html", charset="utf-8")
        else:
            try:
                m.set_content(text, charset=charset, cte="quoted-printable" if charset != "utf-8" else None)
            except UnicodeEncodeError:
                m.set_content(text)
            if kind < 0.35:
                m.add_alternative("<html><body>" + "".join(f"<p>{p}</p>" for p in text.split("\n\n")) + "</body></html>", subtype="html")
            if kind > 0.9:
                m.add_attachment(pdf, maintype="application", subtype="pdf", filename="documento.pdf")
        out.write(f"From {email} {time.asctime(when.utctimetuple())}\n".encode())
        BytesGenerator(out, mangle_from_=True, policy=SMTP.clone(linesep="\n")).flatten(m)
        out.write(b"\n")
PY
    printf '%s\n' "$KEY" >"$DIR/key"
fi
log "mbox $(du -h "$MBOX" | cut -f1), $(grep -c '^From ' "$MBOX") messages"

now_s() { printf '%s\n' "$EPOCHREALTIME"; }
RES="$DIR/results.txt"
: >"$RES"

run_voxtrail() {
    local db="$DIR/voxtrail.db" t0 t1 n
    rm -f "$db" "$db-wal" "$db-shm"
    "$VOXTRAIL" --database "sqlite://$db" operation create bench >/dev/null
    cat "$MBOX" >/dev/null
    sync
    t0=$(now_s)
    "$VOXTRAIL" --database "sqlite://$db" import --operation bench --format mbox --agents "$AGENTS" \
        "$MBOX" 2>"$DIR/voxtrail.import.log"
    t1=$(now_s)
    n=$(grep -c '^skipped: ' "$DIR/voxtrail.import.log" || true)
    tail -n 1 "$DIR/voxtrail.import.log" >&2
    echo "voxtrail $t0 $t1 $n" >>"$RES"
}

run_python() {
    local t0 t1
    cat "$MBOX" >/dev/null
    t0=$(now_s)
    python3 - "$MBOX" >"$DIR/python.log" <<'PY'
import mailbox, sys
count = chars = 0
for m in mailbox.mbox(sys.argv[1]):
    fields = [str(m.get(h, "")) for h in ("Message-ID", "From", "To", "Cc", "Subject", "Date")]
    body = ""
    for part in m.walk():
        if part.get_content_type() in ("text/plain", "text/html") and part.get_filename() is None:
            payload = part.get_payload(decode=True) or b""
            body = payload.decode(part.get_content_charset() or "utf-8", "replace")
            if part.get_content_type() == "text/plain":
                break
    count += 1
    chars += len(body) + sum(map(len, fields))
print(count, chars)
PY
    t1=$(now_s)
    echo "python $t0 $t1 0" >>"$RES"
}

for _ in $(seq 1 "$REPS"); do
    run_voxtrail
    run_python
done
rm -f "$DIR"/voxtrail.db*

python3 - "$RES" "$MESSAGES" <<'PY' | tee "$DIR/summary.txt"
import sys
n = int(sys.argv[2])
runs, skipped = {}, 0
for line in open(sys.argv[1]):
    label, t0, t1, s = line.split()
    runs.setdefault(label, []).append(float(t1) - float(t0))
    if label == "voxtrail":
        skipped = int(s)
v, p = min(runs["voxtrail"]), min(runs["python"])
print(f"mbox import: {n} messages ({skipped} skipped: unmapped sender), best of {len(runs['voxtrail'])} runs each")
print(f"{'':<44}{'seconds':>9}{'messages/s':>12}")
print(f"{'voxtrail import --format mbox (SQLite, durable)':<44}{v:>9.2f}{n/v:>12.0f}")
print(f"{'python3 mailbox.mbox parse (nothing stored)':<44}{p:>9.2f}{n/p:>12.0f}")
print(f"ratio voxtrail / python (messages/s): {p/v:.2f}x   target: voxtrail >= 5000 messages/s")
print("all runs (seconds): " + "; ".join(f"{k} " + " ".join(f"{t:.2f}" for t in r) for k, r in runs.items()))
PY
machine_line
