// POST /v1/recommend: top-n items for users, scored by the served RL version.
//
//   1. Body within --max-body-bytes; the served version taken once (one version per request).
//   2. Stateful queries: every user's state (recent items, consumed set) in one HMGET through the
//      `FeatureStoreClient` (its worker threads, never the request's), and the popular items in the
//      same call when some answer needs them. No feature store, or Redis down or slow: 503 with
//      Retry-After (the stateless form still works). Stateless queries never need Redis, except
//      an empty history, which takes the popular items when Redis answers and the model's scores
//      for the empty state when it does not.
//   3. One scorer pass over every user that the model answers; per user, padding, OOV, items the
//      checkpoint has no key for, consumed / history / excluded items are masked, and the top n
//      come back best first.
//
// Answer (one per query; a batch answers {"results": [...]} in request order):
//   {"user": "u1" | null, "items": [{"item": "i9", "score": 1.23}, …], "source": "model" | "popular",
//    "model_version": "step-…", "step": N}
// With source "popular", score is the item's count in the popular window.
import Foundation
import FeatureStore
import Features
import Hummingbird
import NIOCore

func recommend(_ request: Request, state: ServingState) async -> Response {
    let body: ByteBuffer
    switch await readBody(request, limits: state.limits, hint: "send fewer users per request") {
    case .body(let b): body = b
    case .refused(let response): return response
    }
    let model: RecommenderServable
    switch state.served(RecommenderServable.self, for: "/v1/recommend") {
    case .model(let m): model = m
    case .refused(let response): return response
    }
    let queries: [RecommendQuery], batch: Bool
    do {
        (queries, batch) = try RecommendRequest.parse(body.readableBytesView, limits: state.limits)
    } catch {
        return errorResponse(error)
    }

    // MARK: Feature store reads
    let statefulUsers = queries.compactMap { $0.isStateful ? $0.user : nil }
    let emptyStateless = queries.contains { $0.history?.isEmpty == true }
    // Enough popular items for the largest answer after its exclusions.
    let popularNeed = queries.map { $0.n + $0.exclude.count }.max() ?? 0
    var userStates: [UserState?] = []
    var popular: PopularItems?
    if !statefulUsers.isEmpty {
        guard let store = state.featureStore else {
            return unavailable("no feature store configured: the stateful form of /v1/recommend reads the user's recent items from "
                               + "Redis — start serve with --redis HOST:PORT (or $STREAMREC_REDIS, or a redis: section in --config), "
                               + "or send the user's items as {\"history\": [...]} (the stateless form)")
        }
        do throws(FeatureStoreClientError) {
            let read = try await store.call { fs in
                let states = try fs.userStates(statefulUsers)
                // A user without history gets the popular items, less what they consumed (nothing, in
                // practice: history and consumed set grow together).
                let fallback = states.filter { $0?.history.isEmpty ?? true }
                var popular: PopularItems?
                if emptyStateless || !fallback.isEmpty {
                    popular = try fs.popularItems(n: popularNeed + (fallback.map { $0?.consumed.count ?? 0 }.max() ?? 0))
                }
                return StoreRead(states: states, popular: popular)
            }
            userStates = read.states
            popular = read.popular
        } catch .failed(let message) {
            return json(500, ["error": "feature store read failed: \(message)"])
        } catch {
            return unavailable("feature store unavailable: \(error); the stateless form of /v1/recommend "
                               + "({\"history\": [...]}) does not read it")
        }
    } else if emptyStateless, let store = state.featureStore {
        // The stateless form must not fail with Redis: without an answer, the model's scores.
        popular = try? await store.popularItems(n: popularNeed)
    }

    // MARK: Plans: the model's rows, or the popular items
    enum Plan {
        case model(row: Int, masked: [Int32])
        case popular(exclude: Set<String>)
    }
    let keys = model.keys
    var plans: [Plan] = []
    plans.reserveCapacity(queries.count)
    var users: [Int32] = [], histories: [Int32] = []
    var stateIndex = 0
    for q in queries {
        var itemIds: [Int32]
        var masked: [Int32] = []
        if q.isStateful {
            let user = q.user!  // the parser requires a user in the stateful form
            let s = userStates[stateIndex]
            stateIndex += 1
            guard let s, !s.history.isEmpty else {
                var exclude = Set(q.exclude)
                for id in s?.consumed ?? [] { if let key = keys.items.key(id) { exclude.insert(key) } }
                plans.append(.popular(exclude: exclude))
                continue
            }
            if let bad = (s.history + s.consumed).first(where: { $0 < 0 }) {
                return json(500, ["error": "feature store read failed: the state of user '\(user)' holds item id \(bad) "
                                  + "(item ids are ≥ 0); it is written only by featurize --kind behavior"])
            }
            itemIds = s.history
            masked = s.consumed
        } else {
            let history = q.history!
            if history.isEmpty, popular != nil {
                plans.append(.popular(exclude: Set(q.exclude)))
                continue
            }
            // Unknown keys are the item OOV id: a zero row, never recommended.
            itemIds = history.map { keys.items.id($0) ?? 1 }
        }
        masked += itemIds
        for key in q.exclude { if let id = keys.items.id(key) { masked.append(id) } }
        // A user the checkpoint does not know (or none) is user 0: a zero row.
        users.append(q.user.flatMap { keys.users.id($0) } ?? 0)
        histories.append(contentsOf: model.state(history: itemIds))
        plans.append(.model(row: users.count - 1, masked: masked))
    }

    // MARK: Scores and answers
    var scores = users.isEmpty ? [] : await model.scores(users: users, histories: histories)
    var results: [String] = []
    results.reserveCapacity(queries.count)
    var byModel = 0, byPopular = 0
    for (q, plan) in zip(queries, plans) {
        var out = "{\"user\":"
        if let user = q.user { appendJSONString(user, to: &out) } else { out += "null" }
        out += ",\"items\":["
        let source: String
        switch plan {
        case .model(let row, let masked):
            let top = model.top(&scores, row: row, n: q.n, masked: masked)
            for (k, item) in top.enumerated() {
                if k > 0 { out += "," }
                out += "{\"item\":"
                appendJSONString(keys.items.key(item.id) ?? "", to: &out)  // recommendable ids have keys
                out += ",\"score\":\(item.score)}"
            }
            source = "model"
            byModel += 1
        case .popular(let exclude):
            var k = 0
            for item in popular?.items ?? [] where !exclude.contains(item.item) {
                if k == q.n { break }
                if k > 0 { out += "," }
                out += "{\"item\":"
                appendJSONString(item.item, to: &out)
                out += ",\"score\":\(item.count)}"
                k += 1
            }
            source = "popular"
            byPopular += 1
        }
        out += "],\"source\":\"\(source)\",\"model_version\":"
        appendJSONString(model.version, to: &out)
        out += ",\"step\":\(model.step)}"
        results.append(out)
    }
    state.metrics.recordRecommendations(model: byModel, popular: byPopular)
    return rawJSON(200, batch ? "{\"results\":[" + results.joined(separator: ",") + "]}" : results[0])
}

/// What one feature-store call brings back for a request.
private struct StoreRead: Sendable {
    var states: [UserState?]
    var popular: PopularItems?
}
