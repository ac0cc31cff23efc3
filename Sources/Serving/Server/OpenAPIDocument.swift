// The OpenAPI 3.1 document of the HTTP API, served at GET /openapi.json. Written by hand next
// to the routes it describes (ServingApp.swift, PredictRoute.swift, RecommendRoute.swift): request
// and error shapes as the parsers enforce them. Tests/ServingTests/OpenAPIContractTests.swift
// checks that every route is documented and runs schemathesis against a live server.

/// The document, JSON text.
public enum OpenAPIDocument {
    public static let json = #"""
{
 "openapi": "3.1.0",
 "info": {
  "title": "StreamRec inference worker (streamrec serve)",
  "version": "1",
  "description": "Predictions (Wide&Deep) and recommendations (the RL families) from the newest checkpoint, hot-reloaded; the real-time popular items from the feature store; the version being served; health and metrics. Every refusal is a JSON object {\"error\": \"…\"} with a 4xx/5xx status."
 },
 "servers": [
  {
   "url": "http://127.0.0.1:8080",
   "description": "streamrec serve's default --host and --port"
  }
 ],
 "paths": {
  "/v1/predict": {
   "post": {
    "operationId": "predict",
    "summary": "Click probabilities for Criteo rows (Wide&Deep models).",
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/PredictRequest"
       }
      }
     }
    },
    "responses": {
     "200": {
      "description": "One probability per row, in request order.",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/PredictResponse"
        }
       }
      }
     },
     "400": {
      "$ref": "#/components/responses/BadRequest"
     },
     "409": {
      "$ref": "#/components/responses/OtherFamily"
     },
     "413": {
      "$ref": "#/components/responses/TooLarge"
     },
     "503": {
      "$ref": "#/components/responses/NoModel"
     }
    }
   }
  },
  "/v1/recommend": {
   "post": {
    "operationId": "recommend",
    "summary": "Top-n items for users (RL models: reinforce, bcq, ddpg).",
    "description": "Stateful ({\"user\"}: the user's recent items come from the feature store), stateless ({\"history\"}: the caller holds them) or several users at once ({\"requests\": [...]}, answered {\"results\": [...]} in request order). A user without history, or an empty stateless history, gets the popular items (source \"popular\").",
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/RecommendRequest"
       }
      }
     }
    },
    "responses": {
     "200": {
      "description": "The answer, or one per query for a batch.",
      "content": {
       "application/json": {
        "schema": {
         "oneOf": [
          {
           "$ref": "#/components/schemas/Recommendation"
          },
          {
           "type": "object",
           "required": [
            "results"
           ],
           "additionalProperties": false,
           "properties": {
            "results": {
             "type": "array",
             "items": {
              "$ref": "#/components/schemas/Recommendation"
             }
            }
           }
          }
         ]
        }
       }
      }
     },
     "400": {
      "$ref": "#/components/responses/BadRequest"
     },
     "409": {
      "$ref": "#/components/responses/OtherFamily"
     },
     "413": {
      "$ref": "#/components/responses/TooLarge"
     },
     "500": {
      "$ref": "#/components/responses/FeatureStoreCorrupt"
     },
     "503": {
      "$ref": "#/components/responses/FeatureStoreUnavailable"
     }
    }
   }
  },
  "/v1/popular": {
   "get": {
    "operationId": "popular",
    "summary": "The feature store's real-time popular items (sliding window over behaviour events).",
    "parameters": [
     {
      "name": "n",
      "in": "query",
      "required": false,
      "description": "How many items (default 10).",
      "schema": {
       "type": "integer",
       "minimum": 1,
       "maximum": 1000,
       "default": 10
      }
     }
    ],
    "responses": {
     "200": {
      "description": "Most popular first; window fields are null until something was counted.",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Popular"
        }
       }
      }
     },
     "400": {
      "$ref": "#/components/responses/BadRequest"
     },
     "500": {
      "$ref": "#/components/responses/FeatureStoreCorrupt"
     },
     "503": {
      "$ref": "#/components/responses/FeatureStoreUnavailable"
     }
    }
   }
  },
  "/v1/model": {
   "get": {
    "operationId": "model",
    "summary": "The model version being served.",
    "responses": {
     "200": {
      "description": "The version, its training step and metrics, and the routes that answer for its kind.",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/ModelInfo"
        }
       }
      }
     },
     "503": {
      "$ref": "#/components/responses/NoModel"
     }
    }
   }
  },
  "/healthz": {
   "get": {
    "operationId": "healthz",
    "summary": "Liveness: 200 while the process is up.",
    "responses": {
     "200": {
      "description": "Up.",
      "content": {
       "application/json": {
        "schema": {
         "type": "object",
         "required": [
          "status"
         ],
         "properties": {
          "status": {
           "const": "ok"
          }
         }
        }
       }
      }
     }
    }
   }
  },
  "/readyz": {
   "get": {
    "operationId": "readyz",
    "summary": "Readiness: 200 once a model is loaded.",
    "responses": {
     "200": {
      "description": "Serving.",
      "content": {
       "application/json": {
        "schema": {
         "type": "object",
         "required": [
          "status",
          "model_version",
          "model_kind"
         ],
         "properties": {
          "status": {
           "const": "ready"
          },
          "model_version": {
           "type": "string"
          },
          "model_kind": {
           "type": "string"
          }
         }
        }
       }
      }
     },
     "503": {
      "description": "Not ready yet.",
      "content": {
       "application/json": {
        "schema": {
         "type": "object",
         "required": [
          "status",
          "error"
         ],
         "properties": {
          "status": {
           "const": "not ready"
          },
          "error": {
           "type": "string"
          }
         }
        }
       }
      }
     }
    }
   }
  },
  "/metrics": {
   "get": {
    "operationId": "metrics",
    "summary": "Prometheus metrics (text exposition format 0.0.4).",
    "responses": {
     "200": {
      "description": "Counters, gauges and histograms named streamrec_serve_*.",
      "content": {
       "text/plain": {
        "schema": {
         "type": "string"
        }
       }
      }
     }
    }
   }
  },
  "/openapi.json": {
   "get": {
    "operationId": "openapi",
    "summary": "This document.",
    "responses": {
     "200": {
      "description": "OpenAPI 3.1.",
      "content": {
       "application/json": {
        "schema": {
         "type": "object"
        }
       }
      }
     }
    }
   }
  }
 },
 "components": {
  "responses": {
   "BadRequest": {
    "description": "The request is refused: the message says what is wrong and where (`rows[3]`, `requests[2].n`).",
    "content": {
     "application/json": {
      "schema": {
       "$ref": "#/components/schemas/Error"
      }
     }
    }
   },
   "OtherFamily": {
    "description": "The server serves another model family's kind; the message names the routes that answer for it.",
    "content": {
     "application/json": {
      "schema": {
       "allOf": [
        {
         "$ref": "#/components/schemas/Error"
        },
        {
         "type": "object",
         "required": [
          "model_kind"
         ],
         "properties": {
          "model_kind": {
           "type": "string"
          }
         }
        }
       ]
      }
     }
    }
   },
   "TooLarge": {
    "description": "Too many rows, users or items in one request, or a body over --max-body-bytes: split the request.",
    "content": {
     "application/json": {
      "schema": {
       "$ref": "#/components/schemas/Error"
      }
     }
    }
   },
   "FeatureStoreUnavailable": {
    "description": "The feature store is not configured, down or slower than --feature-store-timeout-ms (Retry-After: 1), or no model is loaded yet.",
    "content": {
     "application/json": {
      "schema": {
       "$ref": "#/components/schemas/Error"
      }
     }
    },
    "headers": {
     "Retry-After": {
      "description": "Seconds to wait before trying again.",
      "schema": {
       "type": "string"
      }
     }
    }
   },
   "FeatureStoreCorrupt": {
    "description": "The feature store answered with data no feature worker writes (a corrupt user state).",
    "content": {
     "application/json": {
      "schema": {
       "$ref": "#/components/schemas/Error"
      }
     }
    }
   },
   "NoModel": {
    "description": "No model loaded yet: the server waits for a checkpoint in its --checkpoints directory.",
    "content": {
     "application/json": {
      "schema": {
       "$ref": "#/components/schemas/Error"
      }
     }
    }
   }
  },
  "schemas": {
   "Error": {
    "type": "object",
    "required": [
     "error"
    ],
    "properties": {
     "error": {
      "type": "string",
      "description": "What is wrong and what to do."
     },
     "reason": {
      "type": "string",
      "description": "The parser's reason when a row was refused (wrong_field_count, non_numeric_dense, …)."
     }
    }
   },
   "PredictRequest": {
    "oneOf": [
     {
      "type": "object",
      "required": [
       "rows"
      ],
      "additionalProperties": false,
      "properties": {
       "rows": {
        "type": "array",
        "minItems": 1,
        "maxItems": 1000,
        "description": "Criteo rows: 39 tab-separated fields I1…I13, C1…C26 (a 40th leading label is accepted and ignored). At most --max-rows (default 1000).",
        "items": {
         "type": "string"
        }
       }
      }
     },
     {
      "type": "object",
      "required": [
       "instances"
      ],
      "additionalProperties": false,
      "properties": {
       "instances": {
        "type": "array",
        "minItems": 1,
        "maxItems": 1000,
        "description": "Rows as objects; a missing or null key is a missing value. At most --max-rows (default 1000).",
        "items": {
         "$ref": "#/components/schemas/Instance"
        }
       }
      }
     }
    ]
   },
   "Instance": {
    "type": "object",
    "additionalProperties": false,
    "patternProperties": {
     "^I([1-9]|1[0-3])$": {
      "type": [
       "number",
       "null"
      ]
     },
     "^C([1-9]|1[0-9]|2[0-6])$": {
      "type": [
       "string",
       "null"
      ],
      "pattern": "^[^\\t\\n\\r]*$"
     }
    }
   },
   "PredictResponse": {
    "type": "object",
    "required": [
     "model_version",
     "step",
     "probabilities"
    ],
    "additionalProperties": false,
    "properties": {
     "model_version": {
      "type": "string"
     },
     "step": {
      "type": "integer"
     },
     "probabilities": {
      "type": "array",
      "items": {
       "type": [
        "number",
        "null"
       ],
       "minimum": 0,
       "maximum": 1
      }
     }
    }
   },
   "RecommendQuery": {
    "type": "object",
    "additionalProperties": false,
    "properties": {
     "user": {
      "type": [
       "string",
       "null"
      ],
      "minLength": 1,
      "description": "The user key; required unless history is given."
     },
     "n": {
      "type": "integer",
      "minimum": 1,
      "maximum": 1000,
      "default": 10
     },
     "history": {
      "type": [
       "array",
       "null"
      ],
      "maxItems": 1000,
      "items": {
       "type": "string"
      },
      "description": "Item keys, oldest first (the stateless form)."
     },
     "exclude": {
      "type": [
       "array",
       "null"
      ],
      "maxItems": 1000,
      "items": {
       "type": "string"
      },
      "description": "Item keys never to return."
     }
    },
    "anyOf": [
     {
      "required": [
       "user"
      ],
      "properties": {
       "user": {
        "type": "string"
       }
      }
     },
     {
      "required": [
       "history"
      ],
      "properties": {
       "history": {
        "type": "array"
       }
      }
     }
    ]
   },
   "RecommendRequest": {
    "oneOf": [
     {
      "$ref": "#/components/schemas/RecommendQuery"
     },
     {
      "type": "object",
      "required": [
       "requests"
      ],
      "additionalProperties": false,
      "properties": {
       "requests": {
        "type": "array",
        "minItems": 1,
        "maxItems": 100,
        "items": {
         "$ref": "#/components/schemas/RecommendQuery"
        }
       }
      }
     }
    ]
   },
   "Recommendation": {
    "type": "object",
    "required": [
     "user",
     "items",
     "source",
     "model_version",
     "step"
    ],
    "properties": {
     "user": {
      "type": [
       "string",
       "null"
      ]
     },
     "items": {
      "type": "array",
      "items": {
       "type": "object",
       "required": [
        "item",
        "score"
       ],
       "properties": {
        "item": {
         "type": "string"
        },
        "score": {
         "type": "number"
        }
       }
      }
     },
     "source": {
      "enum": [
       "model",
       "popular"
      ]
     },
     "model_version": {
      "type": "string"
     },
     "step": {
      "type": "integer"
     }
    }
   },
   "Popular": {
    "type": "object",
    "required": [
     "items",
     "window_start",
     "window_end",
     "window_seconds",
     "slide_seconds",
     "watermark",
     "late_events"
    ],
    "properties": {
     "items": {
      "type": "array",
      "items": {
       "type": "object",
       "required": [
        "item",
        "count"
       ],
       "properties": {
        "item": {
         "type": "string"
        },
        "count": {
         "type": "integer"
        }
       }
      }
     },
     "window_start": {
      "type": [
       "integer",
       "null"
      ]
     },
     "window_end": {
      "type": [
       "integer",
       "null"
      ]
     },
     "window_seconds": {
      "type": [
       "integer",
       "null"
      ]
     },
     "slide_seconds": {
      "type": [
       "integer",
       "null"
      ]
     },
     "watermark": {
      "type": [
       "integer",
       "null"
      ]
     },
     "late_events": {
      "type": "integer"
     }
    }
   },
   "ModelInfo": {
    "type": "object",
    "required": [
     "model_kind",
     "model_version",
     "step",
     "samples_trained",
     "metrics",
     "loaded_at",
     "load_seconds",
     "directory",
     "model_bytes",
     "routes"
    ],
    "properties": {
     "model_kind": {
      "type": "string"
     },
     "model_version": {
      "type": "string"
     },
     "step": {
      "type": "integer"
     },
     "samples_trained": {
      "type": "integer"
     },
     "metrics": {
      "type": "object",
      "additionalProperties": {
       "type": "number"
      }
     },
     "loaded_at": {
      "type": "string",
      "format": "date-time"
     },
     "load_seconds": {
      "type": "number"
     },
     "directory": {
      "type": "string"
     },
     "model_bytes": {
      "type": "integer"
     },
     "routes": {
      "type": "array",
      "items": {
       "type": "string"
      }
     }
    }
   }
  }
 }
}
"""#
}
