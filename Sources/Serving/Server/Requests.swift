// What every route shares about requests and responses: the limits, the refusal type, reading a
// body within the limit, JSON input helpers, and the JSON responses (every refusal is
// `{"error": "..."}` with a 4xx/5xx status).
import Foundation
import Hummingbird
import NIOCore

/// A request the server refuses, with the HTTP status and a message for the client.
public struct RequestError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    public var message: String
    /// Parser rejection reason (`wrong_field_count`, …) when a row was refused.
    public var reason: String?

    public init(_ status: Int, _ message: String, reason: String? = nil) {
        self.status = status
        self.message = message
        self.reason = reason
    }

    public var description: String { message }
}

/// Limits on one request, for every route.
public struct RequestLimits: Sendable {
    /// Rows (or instances) in one `/v1/predict` request (`--max-rows`).
    public var maxRows: Int
    /// Largest request body (`--max-body-bytes`).
    public var maxBodyBytes: Int
    /// Users in one `/v1/recommend` request (`--max-users`).
    public var maxUsers: Int
    /// Items in one `history` or `exclude` list of `/v1/recommend` (`--max-history`).
    public var maxHistory: Int

    public init(maxRows: Int = 1000, maxBodyBytes: Int = 4 << 20, maxUsers: Int = 100, maxHistory: Int = 1000) {
        self.maxRows = maxRows
        self.maxBodyBytes = maxBodyBytes
        self.maxUsers = maxUsers
        self.maxHistory = maxHistory
    }
}

/// A body, or the response that refused it.
enum BodyRead {
    case body(ByteBuffer)
    case refused(Response)
}

/// Reads the whole body within `limits.maxBodyBytes`. A declared length over the limit is
/// refused before any of the body is read; the response closes the connection
/// (`RequestReadTimeoutHandler`) so the body is never waited for.
func readBody(_ request: Request, limits: RequestLimits, hint: String) async -> BodyRead {
    var request = request
    if let declared = request.headers[.contentLength], let length = Int(declared), length > limits.maxBodyBytes {
        var response = errorResponse(RequestError(413, "request body of \(length) bytes (Content-Length) is larger than \(limits.maxBodyBytes) bytes (--max-body-bytes); \(hint)"))
        response.headers[.connection] = "close"
        return .refused(response)
    }
    do {
        return .body(try await request.collectBody(upTo: limits.maxBodyBytes))
    } catch let error as HTTPResponseError where error.status == .contentTooLarge {
        return .refused(errorResponse(RequestError(413, "request body is larger than \(limits.maxBodyBytes) bytes (--max-body-bytes); \(hint)")))
    } catch {
        return .refused(errorResponse(RequestError(400, "could not read the request body: \(error)")))
    }
}

/// Helpers for bodies parsed with `JSONSerialization`.
enum JSONInput {
    /// JSONSerialization gives booleans as NSNumber too; `true` is not a number.
    static func isBool(_ n: NSNumber) -> Bool {
        #if canImport(Darwin)
        return CFGetTypeID(n) == CFBooleanGetTypeID()
        #else
        return String(cString: n.objCType) == "c" && (n == NSNumber(value: true) || n == NSNumber(value: false)) && n is Bool
        #endif
    }

    static func shortDescription(_ error: any Error) -> String {
        let text = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? String(describing: error)
        return String(text.prefix(200))
    }
}

// MARK: - Responses

/// 503 with `Retry-After: 1`.
func unavailable(_ message: String) -> Response {
    var response = json(503, ["error": message])
    response.headers[.retryAfter] = "1"
    return response
}

func noModel() -> Response {
    json(503, ["error": "no model loaded yet: the server is waiting for a checkpoint to appear in its --checkpoints directory"])
}

func errorResponse(_ e: RequestError) -> Response {
    var object = ["error": e.message]
    if let reason = e.reason { object["reason"] = reason }
    return json(e.status, object)
}

func json(_ status: Int, _ value: some Encodable) -> Response {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let data = (try? encoder.encode(value)) ?? Data("{\"error\":\"could not encode the response\"}".utf8)
    return rawJSON(status, String(decoding: data, as: UTF8.self))
}

func rawJSON(_ status: Int, _ text: String) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    return Response(status: HTTPResponse.Status(code: status), headers: headers,
                    body: .init(byteBuffer: ByteBuffer(string: text)))
}

/// Appends `s` as a JSON string literal (quotes and escapes included).
func appendJSONString(_ s: String, to out: inout String) {
    out += "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20:
            out += "\\u00"
            out += String(scalar.value, radix: 16).leftPadded(to: 2)
        default: out.unicodeScalars.append(scalar)
        }
    }
    out += "\""
}

private extension String {
    func leftPadded(to n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
