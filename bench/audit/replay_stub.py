"""A paging replay stub in front of a moto server (moto ignores page sizes): every request is
forwarded to moto, but DescribeSecurityGroups and DescribeInstances answers are cut into pages
of at most MaxResults items (instances counted inside reservations), chained by nextToken, as
AWS does. Prints one line per request it answered to stderr: ACTION PAGE.

argv: LISTEN_PORT MOTO_URL
"""
import http.server
import sys
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

PORT, MOTO = int(sys.argv[1]), sys.argv[2].rstrip("/")
LISTS = {"DescribeSecurityGroups": "securityGroupInfo", "DescribeInstances": "reservationSet"}


def local(tag):
    return tag.rsplit("}", 1)[-1]


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def forward(self, body):
        req = urllib.request.Request(MOTO + self.path, data=body if self.command == "POST" else None,
                                     method=self.command)
        for k, v in self.headers.items():
            if k.lower() not in ("host", "content-length"):
                req.add_header(k, v)
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, r.read(), r.headers.get("content-type", "text/xml")
        except urllib.error.HTTPError as e:
            return e.code, e.read(), "text/xml"

    def answer(self, status, data, ctype):
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.answer(*self.forward(None))

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        form = dict(urllib.parse.parse_qsl(body.decode()))
        action = form.get("Action", "")
        if action not in LISTS:
            return self.answer(*self.forward(body))
        size = int(form.get("MaxResults", "1000"))
        start = int(form.get("NextToken", "p0")[1:])
        for k in ("NextToken", "MaxResults"):
            form.pop(k, None)
        status, data, ctype = self.forward(urllib.parse.urlencode(form).encode())
        if status != 200:
            return self.answer(status, data, ctype)
        ET.register_namespace("", "http://ec2.amazonaws.com/doc/2016-11-15/")
        root = ET.fromstring(data)
        lst = next(e for e in root if local(e.tag) == LISTS[action])
        items = list(lst)
        for e in items:
            lst.remove(e)
        taken, count, i = [], 0, start
        while i < len(items):
            n = 1
            if action == "DescribeInstances":
                n = sum(len(list(c)) for c in items[i] if local(c.tag) == "instancesSet")
            if taken and count + n > size:
                break
            taken.append(items[i])
            count += n
            i += 1
        for e in taken:
            lst.append(e)
        for e in list(root):
            if local(e.tag) == "nextToken":
                root.remove(e)
        if i < len(items):
            t = ET.SubElement(root, "nextToken")
            t.text = f"p{i}"
        print(action, start, file=sys.stderr, flush=True)
        self.answer(200, ET.tostring(root), "text/xml")


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
