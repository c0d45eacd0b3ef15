#!/usr/bin/env python3
"""Drives Debian's headless Chromium through ChromeDriver (the W3C WebDriver protocol, spoken with
the standard library only) over gpuledger's web pages, and prints what a person would have seen
as JSON: for every visit the final URL, the title, the page's text, every chart mark with its data
and its rendered size, and the links. The Rust test (tests/web.rs) decides what is right.

Input (stdin, JSON): {"base": "http://127.0.0.1:PORT", "visits": [{"token": "...", "paths": [...],
"print": [...]}]}. Each visit signs in with its token through the sign-in form, walks its paths,
prints (PDF) its print paths, and signs out.
"""
import base64, json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request

CHROMIUM = os.environ.get("GPULEDGER_CHROMIUM", "/usr/bin/chromium")
DRIVER = os.environ.get("GPULEDGER_CHROMEDRIVER", "/usr/bin/chromedriver")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Driver:
    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen([DRIVER, f"--port={self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        for _ in range(100):
            try:
                if self.call("GET", "/status")["value"]["ready"]:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        self.profile = tempfile.mkdtemp(prefix="gpuledger-chromium-")
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={self.profile}", "--window-size=1280,1600"]
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome",
                "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}}
        self.session = self.call("POST", "/session", caps)["value"]["sessionId"]

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"webdriver {method} {path}: {e.read().decode()}") from None

    def s(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)["value"]

    def go(self, url):
        self.s("POST", "/url", {"url": url})

    def js(self, script, *args):
        return self.s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def close(self):
        try:
            self.call("DELETE", f"/session/{self.session}")
        finally:
            self.proc.terminate()
            self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)


SNAPSHOT = """
const marks = [...document.querySelectorAll('svg rect[data-value]')].map(r => {
  const b = r.getBoundingClientRect();
  return {chart: r.closest('figure') ? r.closest('figure').id : '', cls: r.getAttribute('class'),
          series: r.dataset.series || r.dataset.measure || '', category: r.dataset.category || r.dataset.item || '',
          value: r.dataset.value || '', width: b.width, height: b.height};
});
return {url: location.href, title: document.title, text: document.body.innerText,
        h1: (document.querySelector('h1') || {}).innerText || '',
        marks: marks, links: [...document.querySelectorAll('a')].map(a => a.getAttribute('href')),
        stylesheets: document.styleSheets.length,
        styled: getComputedStyle(document.body).fontFamily};
"""


def main():
    job = json.load(sys.stdin)
    base = job["base"]
    out = []
    d = Driver()
    try:
        for visit in job["visits"]:
            d.s("DELETE", "/cookie")
            d.go(base + "/ui/login")
            d.js("document.getElementById('token').value = arguments[0]; document.querySelector('form.login').submit();",
                 visit["token"])
            for _ in range(100):
                if not d.js("return location.pathname").startswith("/ui/login"):
                    break
                time.sleep(0.05)
            landed = d.js("return location.pathname")
            pages = []
            for p in visit.get("paths", []):
                d.go(base + p)
                snap = d.js(SNAPSHOT)
                snap["path"] = p
                pages.append(snap)
            printed = []
            for p in visit.get("print", []):
                d.go(base + p)
                pdf = base64.b64decode(d.s("POST", "/print", {"background": True, "page": {"width": 21.0, "height": 29.7}, "margin": {"top": 1.5, "bottom": 1.5, "left": 1.5, "right": 1.5}}))
                printed.append({"path": p, "bytes": len(pdf), "pages": pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages"),
                                "pdf": pdf[:5].decode("latin-1")})
                if visit.get("pdf_dir"):
                    name = p.strip("/").replace("/", "_") + ".pdf"
                    with open(os.path.join(visit["pdf_dir"], name), "wb") as f:
                        f.write(pdf)
            out.append({"landed": landed, "pages": pages, "printed": printed})
    finally:
        d.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
