// Scrapes a process's GET /metrics (Prometheus text) over loopback for tests: a plain HTTP/1.0
// request on a socket (no URLSession: nothing to configure, bounded by a receive timeout).
import Foundation
import Observability
#if canImport(Glibc)
import Glibc
#endif

/// `GET path` on 127.0.0.1:`port`; returns the status code and body. Throws when nothing answers.
public func httpGet(port: Int, path: String = "/metrics", timeout: Double = 5) throws -> (status: Int, body: String) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw FixtureError("socket() failed: errno \(errno)") }
    defer { close(fd) }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw FixtureError("nothing listens on 127.0.0.1:\(port) (errno \(errno))") }
    let request = Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
    guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == request.count else {
        throw FixtureError("could not send the request to 127.0.0.1:\(port)")
    }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 { throw FixtureError("no complete answer from 127.0.0.1:\(port)\(path) within \(timeout) s") }
        if n == 0 { break }
        response.append(contentsOf: buffer[0..<n])
    }
    let text = String(decoding: response, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n"), let status = Int(text.split(separator: " ").dropFirst().first ?? "") else {
        throw FixtureError("not an HTTP response from 127.0.0.1:\(port): \(text.prefix(200))")
    }
    return (status, String(text[split.upperBound...]))
}

/// The parsed GET /metrics of the process on `port`.
public func scrapeMetrics(port: Int) throws -> PrometheusText {
    let (status, body) = try httpGet(port: port)
    guard status == 200 else { throw FixtureError("GET /metrics on port \(port) answered \(status): \(body.prefix(200))") }
    return try PrometheusText(body)
}

/// The port a process announced with `… metrics on http://HOST:PORT/metrics` in `output`.
public func announcedMetricsPort(in output: String) -> Int? {
    guard let r = output.range(of: #"metrics on http://[^:\s]+:(\d+)/metrics"#, options: .regularExpression) else { return nil }
    let m = output[r]
    return Int(m.split(separator: ":").last?.split(separator: "/").first ?? "")
}
