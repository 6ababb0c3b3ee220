import socket, json, time, sys, glob
body = json.dumps({"model": "tts-1", "input": " ".join(["The ferry stayed in harbour for three days."] * 60), "voice": "joe",
                   "response_format": "wav", "stream_format": sys.argv[1] if len(sys.argv) > 1 else None}).encode()
before = set(glob.glob("/tmp/higgs-serve-*"))
for i in range(5):
    s = socket.create_connection(("127.0.0.1", 8732))
    s.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    s.close()
time.sleep(8)
import urllib.request
print(sys.argv[1:], urllib.request.urlopen("http://127.0.0.1:8732/health").read().decode(), "leaked dirs", len(set(glob.glob("/tmp/higgs-serve-*")) - before))
