"""Write the phishing evaluation set (issue 21): labelled .eml files for tests/unit/test_phishing_corpus.py.

    python tests/data/phishing/make_corpus.py      # rewrites tests/data/phishing/mail/ and labels.csv

Half phishing, modelled on published campaigns (APWG trend reports, the rspamd and Stalwart rule
sets, CISA/FBI business-email-compromise advisories): brand credential harvesting with link text
that shows one host and goes to another, look-alikes of the receiving company's own domain and of
its suppliers (edit distance, hyphenated brand names, Cyrillic homoglyphs and punycode), spoofed
suppliers failing DMARC with a Reply-To elsewhere, display names carrying another address,
malware attachments (double extensions, macro documents, password-protected archives, disk
images), URL shorteners and raw IP links, HTML credential forms, and some weak ones that only a
person (or the naive Bayes model) would catch. Half legitimate: newsletters (with trackers,
shorteners, urgency and Reply-To on the sender's ESP), receipts from the brands phishing imitates,
calendar invitations, personal mail (questions, urgency, soft-failing SPF, mailing lists that
break DMARC), and mail with links and attachments (invoices, shared documents, an encrypted
archive from a lawyer). No single marker separates the halves: legitimate mail also has first-time
senders, payment and urgency wording, shorteners, failing authentication and archives.

Each message carries the Authentication-Results our listener would have written (the test reads
it as the stored `authentication`); context.json is the receiving inbox's history (its tenant's
domains and its correspondents). The output is deterministic (seeded).
"""
from __future__ import annotations

import csv
import hashlib
import datetime as dt
import io
import json
import random
import zipfile
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
OWN = "harborlight.com"
ME = f"dana.reyes@{OWN}"
COLLEAGUES = [f"{n}@{OWN}" for n in ("sam.ortiz", "lee.chen", "priya.nair", "tom.walsh", "finance")]
FRIENDS = ["jamie.fox88@gmail.com", "marta.kowalska@gmail.com", "ben.okafor@outlook.com", "ana.silva@yahoo.com"]
SUPPLIERS = ["accounts@fabrikam.com", "j.meyer@fabrikam.com", "orders@contoso.com", "kate@tailspin-toys.com",
             "invoices@lucerne-publishing.com", "m.rossi@northwindtraders.com"]
CORRESPONDENTS = COLLEAGUES + FRIENDS + SUPPLIERS
FIRST = ["Alex", "Chris", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery", "Quinn", "Robin", "Sasha"]
LAST = ["Miller", "Schmidt", "Garcia", "Nguyen", "Kowalski", "Brown", "Rossi", "Dubois", "Okafor", "Larsen"]
BASE = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.timezone.utc)


class Corpus:
    def __init__(self) -> None:
        self.rnd = random.Random(21)
        self.rows: list[tuple[str, str, str]] = []
        self.count = 0

    def pick(self, seq):  # noqa: ANN001, ANN201
        return self.rnd.choice(seq)

    def person(self) -> str:
        return f"{self.pick(FIRST)} {self.pick(LAST)}"

    def add(self, label: str, family: str, msg: EmailMessage, auth: dict) -> None:
        self.count += 1
        name = f"{self.count:03d}-{label}-{family}.eml"
        domain = msg["From"].addresses[0].domain if msg["From"] else "unknown"
        results = "; ".join([f"spf={auth.get('spf', 'none')} smtp.mailfrom={auth.get('mailfrom', domain)}",
                             f"dkim={auth.get('dkim', 'none')} header.d={auth.get('dkim_d', domain)}",
                             f"dmarc={auth.get('dmarc', 'none')} header.from={domain}"])
        msg["Message-ID"] = f"<{self.count}.{family}@{domain}>"
        msg["Date"] = format_datetime(BASE + dt.timedelta(hours=7 * self.count))
        raw = f"Authentication-Results: mx.{OWN}; {results}\r\n".encode() + msg.as_bytes(policy=msg.policy.clone(
            linesep="\r\n"))
        (HERE / "mail" / name).write_bytes(raw)
        self.rows.append((name, label, family))


def message(sender: str, subject: str, *, name: str = "", to: str = ME, text: str | None = None,
            html: str | None = None, reply_to: str | None = None, headers: dict | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f'"{name}" <{sender}>' if name else sender
    msg["To"] = to
    msg["Subject"] = subject
    if reply_to:
        msg["Reply-To"] = reply_to
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(text or "(see the HTML version)")
    if html:
        msg.add_alternative(html, subtype="html")
    return msg


def attach(msg: EmailMessage, filename: str, data: bytes, ctype: str = "application/octet-stream") -> None:
    maintype, subtype = ctype.split("/")
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)


def zip_of(files: dict[str, bytes], *, encrypted: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    raw = bytearray(buffer.getvalue())
    if encrypted:  # set the "encrypted" flag bit of every entry, as ZipCrypto archives have it
        for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            start = 0
            while (at := raw.find(signature, start)) >= 0:
                raw[at + offset] |= 0x01
                start = at + 4
    return bytes(raw)


def ics(summary: str, organizer: str, start: dt.datetime) -> bytes:
    stamp = start.strftime("%Y%m%dT%H%M%SZ")
    end = (start + dt.timedelta(hours=1)).strftime("%Y%m%dT%H%M%SZ")
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//corpus//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\n"
            f"UID:{hashlib.sha1((summary + stamp).encode()).hexdigest()[:16]}@corpus\r\nDTSTAMP:{stamp}\r\nDTSTART:{stamp}\r\nDTEND:{end}\r\n"
            f"SUMMARY:{summary}\r\nORGANIZER:mailto:{organizer}\r\nATTENDEE:mailto:{ME}\r\nEND:VEVENT\r\n"
            f"END:VCALENDAR\r\n").encode()


PASS = {"spf": "pass", "dkim": "pass", "dmarc": "pass"}
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


# --- phishing -----------------------------------------------------------------------------------
def brand_harvest(c: Corpus) -> None:
    """Brand credential harvesting: the link shows the brand's login and goes elsewhere."""
    brands = [("Microsoft 365", "login.microsoftonline.com", "Your password expires today"),
              ("PayPal", "www.paypal.com", "Your account access has been limited"),
              ("Apple Support", "appleid.apple.com", "Your Apple ID was used to sign in on a new device"),
              ("Netflix", "www.netflix.com", "Payment failed: update your billing information"),
              ("DocuSign", "www.docusign.net", "Please review and sign: Q4 contract"),
              ("Dropbox", "www.dropbox.com", "A file was shared with you")]
    hosts = ["secure-account-review.com", "notify-center-app.net", "id-verification-portal.info", "cloud-docs-view.co",
             "mailbox-support-team.online", "acc-service-desk.top"]
    for i in range(15):
        brand, shown, subject = brands[i % len(brands)]
        host = c.pick(hosts)
        sender = f"{c.pick(['no-reply', 'support', 'security', 'alert'])}@{c.pick(hosts)}"
        lines = c.pick(["We noticed unusual sign-in activity on your account.",
                        "To keep your account secure, please confirm your identity.",
                        "Your recent payment could not be processed.",
                        "A document is waiting for your signature."])
        ask = c.pick(["Sign in to avoid suspension of your account.", "Verify your account within 24 hours.",
                      "Please log in here to review the details.", "Confirm your password to continue."])
        href = f"https://{host}/{c.pick(['auth', 'session', 'verify', 'l'])}/{c.rnd.randrange(10**6)}"
        html = (f"<p>Dear customer,</p><p>{lines}</p><p>{ask}</p>"
                f"<p><a href=\"{href}\">https://{shown}/signin</a></p><p>Thank you,<br>{brand}</p>")
        auth = PASS if i % 3 else {"spf": "pass", "dkim": "none", "dmarc": "none"}
        c.add("phishing", "brand-harvest", message(sender, subject, name=brand, text=f"{lines}\n{ask}\n", html=html),
              auth)


def own_lookalike(c: Corpus) -> None:
    """Business email compromise from a look-alike of the company's own domain."""
    fakes = ["harb0rlight.com", "harborlihgt.com", "harborlight-corp.com", "harbourlight.com", "harborllght.com",
             "harborlight.co", "harbor-light.com", "hanborlight.com"]
    asks = ["I need you to process a wire transfer to a new supplier today. I'm in meetings, reply here only.",
            "Are you at your desk? I need you to buy some gift cards for a client, I will reimburse you.",
            "Please update the bank details for our payroll account before Friday's run, new account details below.",
            "Can you handle an urgent payment for me? It must go out immediately. Keep this confidential."]
    for i in range(11):
        fake = fakes[i % len(fakes)]
        boss = c.pick(["Mark Ellison (CEO)", "Sarah Lind", "Mark Ellison", "CFO Office"])
        text = f"Hi Dana,\n\n{c.pick(asks)}\n\nThanks,\n{boss.split(' (')[0]}\nSent from my iPhone"
        if fake == "harborlight.co":  # same name, another suffix: only the wording and reply-to tell
            msg = message(f"mark.ellison@{fake}", c.pick(["Quick favour", "Urgent request", "Payment today"]),
                          name=boss, text=text, reply_to=f"mark.ellison.ceo@{c.pick(['gmail.com', 'outlook.com'])}")
        else:
            msg = message(f"{c.pick(['mark.ellison', 'ceo', 'sarah.lind', 'finance'])}@{fake}",
                          c.pick(["Quick favour", "Urgent request", "Are you available?", "Payment today"]),
                          name=boss, text=text)
        c.add("phishing", "own-lookalike", msg, PASS if i % 2 else {"spf": "pass", "dkim": "none", "dmarc": "none"})


def homoglyph(c: Corpus) -> None:
    """Cyrillic look-alike brand domains (IDN homographs), in From and in links."""
    fakes = [("pаypal.com", "PayPal"), ("аpple.com", "Apple"), ("micrоsoft.com", "Microsoft account team"),
             ("amаzon.com", "Amazon"), ("gооgle.com", "Google"), ("fаbrikam.com", "Fabrikam Accounts")]
    for i in range(10):
        fake, name = fakes[i % len(fakes)]
        puny = fake.encode("idna").decode()
        href = f"https://{puny}/{c.pick(['account', 'secure', 'billing'])}/{c.rnd.randrange(10**5)}"
        body = c.pick(["Your account has been placed on hold. Review the recent activity.",
                       "We could not verify your billing details. Open your account to continue.",
                       "An invoice is available for your recent purchase."])
        html = f"<p>{body}</p><p><a href=\"{href}\">Open your account</a></p>"
        msg = message(f"service@{puny}", c.pick(["Account notice", "Action needed", "Your invoice"]), name=name,
                      text=f"{body}\n{href}\n", html=html)
        c.add("phishing", "homoglyph", msg, PASS if i % 2 else {"spf": "pass", "dkim": "pass", "dmarc": "none"})


def supplier_lookalike(c: Corpus) -> None:
    """Invoice fraud from a look-alike of a supplier's domain."""
    fakes = ["fabrikarn.com", "fabrikam-billing.com", "contosso.com", "tailspin-toy.com", "lucerne-publlshing.com",
             "northwindtrader.com", "fabricam.com", "c0ntoso.com"]
    for i in range(10):
        fake = fakes[i % len(fakes)]
        amount = f"{c.rnd.randrange(1200, 48000):,}.{c.rnd.randrange(100):02d}"
        text = c.pick([
            f"Hello,\n\nPlease note our bank details have changed. Kindly remit the outstanding invoice of EUR {amount} "
            f"to our new account number below.\n\nIBAN DE{c.rnd.randrange(10**12)}\n\nRegards,\nAccounts",
            f"Dear Dana,\n\nAttached is the overdue statement. Payment overdue: USD {amount}. To avoid interruption "
            f"of service please settle by wire transfer today.\n\nBest regards,\nBilling team",
            f"Hi,\n\nFollowing our audit, we need to update your payment details on file. Use the new bank details "
            f"for invoice {c.rnd.randrange(1000, 9999)} (USD {amount}).\n\nThanks"])
        msg = message(f"{c.pick(['accounts', 'billing', 'j.meyer', 'ar'])}@{fake}",
                      c.pick(["Updated banking information", "Overdue invoice", "Invoice payment", "Remittance"]),
                      name=c.person(), text=text)
        if i % 3 == 0:
            attach(msg, f"statement_{c.rnd.randrange(100, 999)}.pdf", PDF, "application/pdf")
        c.add("phishing", "supplier-lookalike", msg, PASS)


def malware(c: Corpus) -> None:
    """Malware delivery: double extensions, macros, encrypted archives, disk images, scripts in archives."""
    kinds = [("Invoice_{n}.pdf.exe", b"MZ\x90\x00", "application/octet-stream", None),
             ("Scan_{n}.docm", b"PK\x03\x04macro", "application/vnd.ms-word.document.macroEnabled.12", None),
             ("Payment_{n}.zip", None, "application/zip", "enc"),
             ("Shipment_{n}.iso", b"CD001", "application/octet-stream", None),
             ("Order_{n}.zip", None, "application/zip", "js"),
             ("Remittance_{n}.xlsm", b"PK\x03\x04macro", "application/vnd.ms-excel.sheet.macroEnabled.12", None),
             ("Document_{n}.html.js", b"var x=1;", "application/javascript", None)]
    for i in range(12):
        pattern, data, ctype, special = kinds[i % len(kinds)]
        filename = pattern.format(n=c.rnd.randrange(1000, 99999))
        if special == "enc":
            data = zip_of({"invoice.pdf.exe": b"MZ"}, encrypted=True)
        elif special == "js":
            data = zip_of({"order_details.js": b"WScript.Echo(1)"})
        password = f"\nThe password for the file is {c.rnd.randrange(1000, 9999)}." if special == "enc" else ""
        sender = f"{c.pick(FIRST).lower()}.{c.pick(LAST).lower()}@{c.pick(['mailhost-ru.net', 'delivery-notice.biz', 'corp-invoices.xyz', 'gmail.com'])}"
        text = c.pick(["Please see the attached invoice and confirm payment.",
                       "Find attached the scanned document you requested.",
                       "Your shipment is on hold. Open the attached file for details immediately.",
                       "Kindly review the attached remittance advice."]) + password
        msg = message(sender, c.pick(["Invoice", "Scanned document", "Shipment notice", "Remittance advice",
                                      "RE: your order"]), name=c.person(), text=text)
        attach(msg, filename, data, ctype)
        auth = [{"spf": "softfail", "dkim": "none", "dmarc": "none"}, {"spf": "none", "dkim": "none", "dmarc": "none"},
                {"spf": "pass", "dkim": "pass", "dmarc": "pass"}][i % 3]
        c.add("phishing", "malware", msg, auth)


def spoofed_supplier(c: Corpus) -> None:
    """A supplier's own address, spoofed: DMARC fails, replies go elsewhere."""
    for i in range(10):
        real = c.pick(SUPPLIERS)
        domain = real.split("@")[1]
        other = c.pick(["fabrikam-payments.net", "secure-billing.co", "gmail.com", "accounts-dept.org"])
        text = c.pick([
            "Hello,\nWe have not received payment for the last invoice. Please process the outstanding balance "
            "today to avoid late fees.\nRegards",
            "Hi Dana,\nPlease use our new bank details for all future payments. Confirm once updated.\nThanks",
            "Dear customer,\nYour account will be suspended unless the attached payment request is settled.\n"])
        msg = message(real, c.pick(["Payment reminder", "Change of bank details", "Account on hold"]),
                      name=c.person(), text=text, reply_to=f"{real.split('@')[0]}@{other}")
        auth = {"spf": c.pick(["fail", "softfail"]), "dkim": "none", "dmarc": "fail", "mailfrom": c.pick(
            ["mx1.bulk-sender.ru", "vps2291.hosting.biz"])}
        c.add("phishing", "spoofed-supplier", msg, auth)


def display_name_address(c: Corpus) -> None:
    """A display name that carries another address, with payment pressure or an IP link."""
    for i in range(12):
        shown = c.pick([f"finance@{OWN}", "accounts@fabrikam.com", "it-support@harborlight.com", "billing@paypal.com"])
        host = c.pick(["198.51.100.23", "203.0.113.77", "192.0.2.10"])
        body = c.pick([f"Your mailbox has exceeded its quota. Restore access here: http://{host}/owa/login",
                       "Outstanding invoice attached, please pay immediately to avoid penalties.",
                       f"Please verify your account to keep receiving mail: http://{host}/verify"])
        msg = message(f"{c.pick(['mailer', 'postmaster', 'notice'])}@{c.pick(['quota-alerts.net', 'mx-relay.info', 'webmail-update.com'])}",
                      c.pick(["Mailbox quota exceeded", "Invoice due", "Action required"]), name=shown, text=body)
        c.add("phishing", "display-name-address", msg, {"spf": "pass", "dkim": "none", "dmarc": "none"})


def form_and_shortener(c: Corpus) -> None:
    """Bank and helpdesk lures: HTML credential forms, shortened links, internationalised hosts."""
    for i in range(14):
        brand = c.pick(["Wells Fargo", "Chase Online", "Bank of America", "IT Helpdesk", "Coinbase"])
        link = c.pick(["https://bit.ly/3x" + str(c.rnd.randrange(10**5)), "https://tinyurl.com/y" + str(c.rnd.randrange(10**5)),
                       "https://xn--secure-bnking-5ob.com/login", "https://cutt.ly/acc" + str(c.rnd.randrange(10**4))])
        form = (f"<form action=\"https://{c.pick(['collect-data.top', 'verify-now.site'])}/p\" method=\"post\">"
                "<input name=\"user\"><input type=\"password\" name=\"pass\"><button>Sign in</button></form>")
        body = c.pick(["Unusual activity was detected. Your access will be locked within 24 hours.",
                       "Final notice: confirm your identity to keep your account active.",
                       "Your e-mail password will expire today. Keep your current password below."])
        html = f"<p>{body}</p>" + (form if i % 2 == 0 else f"<p><a href=\"{link}\">Continue</a></p>")
        sender = f"{c.pick(['secure', 'alerts', 'helpdesk'])}@{c.pick(['online-banking-help.com', 'acc-security.net', 'mail-service-desk.org'])}"
        msg = message(sender, c.pick(["Security alert", "Account locked", "Password expiry notice"]), name=brand,
                      text=f"{body}\n{link}\n", html=html)
        c.add("phishing", "form-shortener", msg, c.pick([PASS, {"spf": "none", "dkim": "none", "dmarc": "none"}]))


def weak(c: Corpus) -> None:
    """Weakly marked lures (a person would still spot them): few signals each."""
    lures = [("Delivery attempt failed", "DHL Express", "parcel-redelivery.info",
              "We could not deliver your parcel. Pay the customs fee of 1.99 EUR to schedule a new delivery."),
             ("You have a new voicemail", "Voice Services", "voicemail-notify.app",
              "You received a new voicemail (0:42). Listen to it on the portal."),
             ("Shared: Q4 bonus plan.xlsx", "HR Team", "hr-portal-docs.com",
              "The Q4 bonus plan was shared with you. Open the document to see your allocation."),
             ("Congratulations, you won", "Rewards", "lucky-rewards.win",
              "You were selected for a 500 USD reward. Claim it before midnight.")]
    for i in range(6):
        subject, name, host, text = lures[i % len(lures)]
        href = f"https://{host}/{c.rnd.randrange(10**6)}"
        html = f"<p>{text}</p><p><a href=\"{href}\">Open</a></p>"
        msg = message(f"noreply@{host}", subject, name=name, text=text, html=html)
        c.add("phishing", "weak", msg, c.pick([PASS, {"spf": "pass", "dkim": "none", "dmarc": "none"}]))


# --- legitimate ----------------------------------------------------------------------------------
def newsletters(c: Corpus) -> None:
    senders = [("Contoso Weekly", "news@mail.contoso.com", "contoso.com"),
               ("Tailspin Toys", "hello@e.tailspin-toys.com", "tailspin-toys.com"),
               ("The Morning Brief", "brief@morningbrief-news.com", "morningbrief-news.com"),
               ("Lucerne Publishing", "newsletter@lucerne-publishing.com", "lucerne-publishing.com"),
               ("Python Weekly", "editor@pythonweekly-digest.com", "pythonweekly-digest.com")]
    for i in range(20):
        name, sender, domain = senders[i % len(senders)]
        track = c.pick([f"click.{domain}", f"links.{domain}", "mailchi.mp", "t.co"])
        extra = c.pick(["", " Act now: the sale ends within 24 hours!", " Read the full story on our site.",
                        " Urgent: last chance to register for the webinar."])
        items = [f"<li><a href=\"https://{track}/r/{c.rnd.randrange(10**6)}\">{c.pick(['Read more', 'The week in review', 'Our new collection', 'Five tips for winter', 'Register now'])}</a></li>" for _ in range(3)]
        if i % 7 == 3:  # a shortened link in the text, as social posts have them
            items.append(f"<li><a href=\"https://bit.ly/{c.rnd.randrange(10**6)}\">Shared on social</a></li>")
        html = f"<h1>{name}</h1><p>This week's highlights.{extra}</p><ul>{''.join(items)}</ul>"
        headers = {"List-Unsubscribe": f"<https://{domain}/unsubscribe?u={c.rnd.randrange(10**6)}>",
                   "List-Id": f"<news.{domain}>", "Precedence": "bulk"}
        reply = f"reply@{c.pick(['mailchimpapp.net', 'sendgrid.net'])}" if i % 6 == 0 else None
        msg = message(sender, c.pick(["This week", "Your weekly digest", "New arrivals", "Issue #" + str(100 + i)]),
                      name=name, text=f"This week's highlights.{extra}", html=html, headers=headers, reply_to=reply)
        c.add("legit", "newsletter", msg, PASS)


def receipts(c: Corpus) -> None:
    shops = [("Amazon.com", "auto-confirm@amazon.com"), ("Apple", "no_reply@email.apple.com"),
             ("PayPal", "service@paypal.com"), ("Netflix", "info@account.netflix.com"),
             ("Contoso Store", "orders@contoso.com"), ("Uber Receipts", "noreply@uber.com"),
             ("Deutsche Bahn", "buchungsbestaetigung@bahn.de")]
    for i in range(20):
        name, sender = shops[i % len(shops)]
        amount = f"{c.rnd.randrange(5, 400)}.{c.rnd.randrange(100):02d}"
        text = c.pick([f"Thank you for your order. Your payment of ${amount} was received.",
                       f"Receipt for your purchase: total {amount} EUR, paid with Visa ending 4242.",
                       f"You paid ${amount} to {c.person()}. Transaction ID {c.rnd.randrange(10**9)}.",
                       f"Your subscription was renewed. Amount charged: {amount} USD. No action needed."])
        domain = sender.split("@")[1].split(".", 1)[-1] if sender.count(".") > 1 else sender.split("@")[1]
        html = (f"<p>{text}</p><p><a href=\"https://www.{domain}/orders/{c.rnd.randrange(10**6)}\">View your order</a>"
                "</p><p>Questions? Visit our help centre.</p>")
        msg = message(sender, c.pick(["Your receipt", "Order confirmation", "Payment received", "Your invoice"]),
                      name=name, text=text, html=html)
        if i % 4 == 0:
            attach(msg, f"receipt-{c.rnd.randrange(10**5)}.pdf", PDF, "application/pdf")
        c.add("legit", "receipt", msg, PASS)


def invitations(c: Corpus) -> None:
    for i in range(16):
        organizer = c.pick(COLLEAGUES + SUPPLIERS) if i % 4 else f"{c.pick(FIRST).lower()}@{c.pick(['adatum.com', 'wingtiptoys.com', 'proseware.org'])}"
        start = BASE + dt.timedelta(days=c.rnd.randrange(3, 40), hours=c.rnd.randrange(0, 8))
        summary = c.pick(["Project sync", "Quarterly review", "Intro call", "Design workshop", "Budget planning"])
        link = f"https://us02web.zoom.us/j/{c.rnd.randrange(10**9, 10**10)}"
        msg = message(organizer, f"Invitation: {summary} @ {start:%a %b %d, %Y %H:%M} (UTC)",
                      name=c.person(), text=f"You have been invited to {summary}.\nJoin Zoom Meeting\n{link}\n")
        attach(msg, "invite.ics", ics(summary, organizer, start), "text/calendar")
        c.add("legit", "invitation", msg, PASS if i % 5 else {"spf": "pass", "dkim": "none", "dmarc": "none"})


def personal(c: Corpus) -> None:
    notes = ["Hi Dana,\n\nAre we still on for lunch on Thursday? Let me know.\n\nBest,\n{me}",
             "Hey,\n\nCould you send me the slides from yesterday? I need them urgently for the client call.\n\nThanks!\n{me}",
             "Hi Dana,\n\nQuick question: did the contract come back signed? Please confirm when you can.\n\n{me}",
             "Dana,\n\nThe draft is in the shared folder. I'd appreciate a review before Friday.\n\nCheers,\n{me}",
             "Hi!\n\nHappy birthday! Hope you have a great day.\n\n{me}",
             "Hello Dana,\n\nFollowing up on our call: the shipment leaves on Monday. Can you check the customs "
             "paperwork?\n\nRegards,\n{me}"]
    for i in range(26):
        sender = c.pick(CORRESPONDENTS) if i % 6 else f"{c.pick(FIRST).lower()}.{c.pick(LAST).lower()}@{c.pick(['gmail.com', 'proton.me', 'adatum.com'])}"
        me = sender.split("@")[0].split(".")[0].title()
        msg = message(sender, c.pick(["Lunch?", "Slides", "Contract", "Draft ready", "Hello", "Shipment"]),
                      name=me, text=c.pick(notes).format(me=me))
        if i % 9 == 4:  # a mailing list post: the list rewrote it, so DMARC fails
            msg["List-Id"] = "<dev.lists.example.org>"
            auth = {"spf": "pass", "dkim": "fail", "dmarc": "fail", "mailfrom": "lists.example.org"}
        elif i % 7 == 2:
            auth = {"spf": "softfail", "dkim": "pass", "dmarc": "pass"}
        else:
            auth = c.pick([PASS, {"spf": "none", "dkim": "pass", "dmarc": "pass"}])
        c.add("legit", "personal", msg, auth)


def with_attachments(c: Corpus) -> None:
    for i in range(18):
        sender = c.pick(SUPPLIERS + COLLEAGUES)
        kind = i % 6
        msg = message(sender, c.pick(["Invoice INV-" + str(c.rnd.randrange(1000, 9999)), "Documents", "Report",
                                      "Photos from the event", "Signed agreement"]), name=c.person(),
                      text=c.pick(["Please find the invoice attached. Payment due within 30 days as agreed.",
                                   "Here are the documents we discussed.",
                                   "Attached is this month's report. Details at https://www.fabrikam.com/reports",
                                   "The photos are in the archive, enjoy!"]))
        if kind == 0:
            attach(msg, "INV-2211.pdf", PDF, "application/pdf")
        elif kind == 1:
            attach(msg, "Q4-report.xlsx", b"PK\x03\x04sheet", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        elif kind == 2:
            attach(msg, "photos.zip", zip_of({"a.jpg": b"\xff\xd8", "b.jpg": b"\xff\xd8"}), "application/zip")
        elif kind == 3:
            attach(msg, "agreement.docx", b"PK\x03\x04word", "application/vnd.openxmlformats-officedocument.wordprocessingml.document")
        elif kind == 4:  # a lawyer's encrypted archive, the password sent separately
            attach(msg, "case-files.zip", zip_of({"brief.pdf": PDF}, encrypted=True), "application/zip")
        else:  # a link whose text is the site and whose href is the same site's tracker
            msg.add_alternative("<p>Details: <a href=\"https://www.fabrikam.com/r/1\">www.fabrikam.com</a></p>",
                                subtype="html")
        c.add("legit", "attachment", msg, PASS)


def main() -> None:
    out = HERE / "mail"
    out.mkdir(exist_ok=True)
    for old in out.glob("*.eml"):
        old.unlink()
    random.seed(21)  # the email package draws MIME boundaries from the global generator
    corpus = Corpus()
    for family in (brand_harvest, own_lookalike, homoglyph, supplier_lookalike, malware, spoofed_supplier,
                   display_name_address, form_and_shortener, weak):
        family(corpus)
    for family in (newsletters, receipts, invitations, personal, with_attachments):
        family(corpus)
    with open(HERE / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "family"])
        writer.writerows(corpus.rows)
    (HERE / "context.json").write_text(json.dumps({"own_domains": [OWN], "correspondents": CORRESPONDENTS},
                                                  indent=2) + "\n")
    counts = {label: sum(1 for _, lab, _ in corpus.rows if lab == label) for label in ("phishing", "legit")}
    print(f"wrote {len(corpus.rows)} messages: {counts}")


if __name__ == "__main__":
    main()
