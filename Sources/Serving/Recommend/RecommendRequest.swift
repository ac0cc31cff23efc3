// POST /v1/recommend bodies → queries. Three shapes:
//
//   {"user": "u123", "n": 10, "exclude": ["i7"]}                 stateful: the user's recent items and
//                                                               consumed set come from the feature store
//   {"user": "u123", "history": ["i1", "i2"], "exclude": [], "n": 10}
//                                                               stateless: the caller holds the state
//                                                               ("user" optional); Redis is not read
//   {"requests": [ <either of the above>, … ]}                  several users; answered {"results": [...]}
//
// "history" present (even empty) makes a query stateless. "n" is an integer in 1…1000 (default 10);
// "exclude" (optional, both forms) lists item keys never to return. Unknown keys are answered,
// not refused. Every refusal says what is wrong and where (`requests[3].n`).
import Foundation

/// One user's question.
struct RecommendQuery: Sendable, Equatable {
    /// The user key; nil only in the stateless form.
    var user: String?
    var n: Int
    /// Item keys, oldest first; nil: the stateful form (read the user's state from Redis).
    var history: [String]?
    var exclude: [String]

    var isStateful: Bool { history == nil }
}

enum RecommendRequest {
    static let maxN = 1000
    static let defaultN = 10
    static let queryKeys: Set<String> = ["user", "n", "history", "exclude"]

    /// The queries of a body and whether it was the batch shape, or a `RequestError` (400, or 413
    /// for lists over the limits).
    static func parse(_ body: some Collection<UInt8>, limits: RequestLimits) throws(RequestError) -> (queries: [RecommendQuery], batch: Bool) {
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(body), options: [])
        } catch {
            throw RequestError(400, "body is not valid JSON (\(JSONInput.shortDescription(error))); send {\"user\": \"u1\", \"n\": 10}, "
                               + "{\"history\": [\"i1\", …], \"n\": 10} or {\"requests\": [...]}")
        }
        guard let object = json as? [String: Any] else {
            throw RequestError(400, "body must be a JSON object: {\"user\": \"u1\", \"n\": 10}, {\"history\": [...]} or {\"requests\": [...]}")
        }
        guard let requests = object["requests"] else {
            return ([try query(object, at: "", limits: limits)], false)
        }
        let others = object.keys.filter { $0 != "requests" }.sorted()
        if !others.isEmpty {
            throw RequestError(400, "a batch is {\"requests\": [...]} alone; unexpected key\(others.count > 1 ? "s" : "") "
                               + others.map { "\"\($0)\"" }.joined(separator: ", ") + " beside \"requests\"")
        }
        guard let list = requests as? [Any] else {
            throw RequestError(400, "\"requests\" must be an array of objects like {\"user\": \"u1\", \"n\": 10}")
        }
        if list.isEmpty { throw RequestError(400, "\"requests\" is empty; send at least one") }
        if list.count > limits.maxUsers {
            throw RequestError(413, "\(list.count) requests in one body; the limit is \(limits.maxUsers) (--max-users): split the request")
        }
        var queries: [RecommendQuery] = []
        queries.reserveCapacity(list.count)
        for (i, item) in list.enumerated() {
            guard let o = item as? [String: Any] else {
                throw RequestError(400, "requests[\(i)] must be an object like {\"user\": \"u1\", \"n\": 10}")
            }
            queries.append(try query(o, at: "requests[\(i)].", limits: limits))
        }
        return (queries, true)
    }

    /// One query object; `at` prefixes field names in messages.
    static func query(_ o: [String: Any], at: String, limits: RequestLimits) throws(RequestError) -> RecommendQuery {
        let unknown = o.keys.filter { !queryKeys.contains($0) }.sorted()
        if !unknown.isEmpty {
            throw RequestError(400, "unknown key\(unknown.count > 1 ? "s" : "") \(unknown.map { "\"\(at)\($0)\"" }.joined(separator: ", ")); "
                               + "allowed: \"user\", \"n\", \"history\", \"exclude\" (or {\"requests\": [...]} for several users)")
        }
        var n = defaultN
        if let value = o["n"] {
            guard let number = value as? NSNumber, !JSONInput.isBool(number), number.doubleValue.rounded() == number.doubleValue,
                  number.doubleValue >= 1, number.doubleValue <= Double(maxN) else {
                throw RequestError(400, "\(at)n must be an integer in 1…\(maxN) (default \(defaultN)), got \(describe(value))")
            }
            n = Int(number.doubleValue)
        }
        var user: String?
        if let value = o["user"], !(value is NSNull) {
            guard let text = value as? String, !text.isEmpty else {
                throw RequestError(400, "\(at)user must be a non-empty string (a user key), got \(describe(value))")
            }
            user = text
        }
        let history = try keys(o["history"], field: "\(at)history", limit: limits.maxHistory)
        let exclude = try keys(o["exclude"], field: "\(at)exclude", limit: limits.maxHistory) ?? []
        if history == nil && user == nil {
            throw RequestError(400, "\(at)user is missing: the stateful form {\"user\": \"u1\", \"n\": 10} reads the user's recent items "
                               + "from the feature store; callers holding the state send {\"history\": [\"i1\", …]} instead")
        }
        return RecommendQuery(user: user, n: n, history: history, exclude: exclude)
    }

    /// A list of item keys (nil when the field is absent or null).
    static func keys(_ value: Any?, field: String, limit: Int) throws(RequestError) -> [String]? {
        guard let value, !(value is NSNull) else { return nil }
        guard let list = value as? [Any] else {
            throw RequestError(400, "\(field) must be an array of item keys (strings), got \(describe(value))")
        }
        if list.count > limit {
            throw RequestError(413, "\(field) holds \(list.count) items; the limit is \(limit) (--max-history; only the last "
                               + "history_length items of a history are used)")
        }
        var out: [String] = []
        out.reserveCapacity(list.count)
        for (k, item) in list.enumerated() {
            guard let key = item as? String else {
                throw RequestError(400, "\(field)[\(k)] must be a string (an item key), got \(describe(item))")
            }
            out.append(key)
        }
        return out
    }

    /// A short rendering of a JSON value for messages.
    static func describe(_ value: Any) -> String {
        switch value {
        case is NSNull: return "null"
        case let s as String: return "\"\(s.prefix(40))\"" + (s.count > 40 ? "…" : "")
        case let n as NSNumber: return JSONInput.isBool(n) ? (n.boolValue ? "true" : "false") : "\(n)"
        case is [Any]: return "an array"
        case is [String: Any]: return "an object"
        default: return "\(type(of: value))"
        }
    }
}
