#include "json.h"

#include <charconv>
#include <cmath>
#include <cstdint>

namespace loupe {
namespace json {

const Value* Value::Find(const std::string& key) const {
  if (type != Type::kObject) return nullptr;
  for (const auto& kv : object)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

namespace {

constexpr int kMaxDepth = 256;  // Keras topologies nest ~10 deep; this only guards the stack.

class Parser {
 public:
  Parser(const std::string& text, const std::string& what) : s_(text), what_(what) {}

  Status ParseDocument(Value* out) {
    SkipWs();
    LOUPE_RETURN_IF_ERROR(ParseValue(out, 0));
    SkipWs();
    if (pos_ != s_.size()) return Error("unexpected data after the JSON value");
    return Status::Ok();
  }

 private:
  Status Error(const std::string& msg) const {
    return Status(StatusCode::kCorruptData,
                  what_ + ": invalid JSON at byte " + std::to_string(pos_) + ": " + msg);
  }
  bool AtEnd() const { return pos_ >= s_.size(); }
  char Peek() const { return s_[pos_]; }
  void SkipWs() {
    while (!AtEnd() && (Peek() == ' ' || Peek() == '\t' || Peek() == '\n' || Peek() == '\r')) ++pos_;
  }
  bool Consume(const char* lit) {
    size_t n = 0;
    while (lit[n]) ++n;
    if (s_.compare(pos_, n, lit) != 0) return false;
    pos_ += n;
    return true;
  }

  Status ParseValue(Value* out, int depth) {
    if (depth > kMaxDepth) return Error("nesting deeper than 256");
    if (AtEnd()) return Error("unexpected end of input");
    char c = Peek();
    switch (c) {
      case '{': return ParseObject(out, depth);
      case '[': return ParseArray(out, depth);
      case '"': out->type = Value::Type::kString; return ParseString(&out->string);
      case 't':
        if (!Consume("true")) return Error("invalid literal");
        out->type = Value::Type::kBool;
        out->boolean = true;
        return Status::Ok();
      case 'f':
        if (!Consume("false")) return Error("invalid literal");
        out->type = Value::Type::kBool;
        out->boolean = false;
        return Status::Ok();
      case 'n':
        if (!Consume("null")) return Error("invalid literal");
        out->type = Value::Type::kNull;
        return Status::Ok();
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return ParseNumber(out);
        return Error(std::string("unexpected character '") + c + "'");
    }
  }

  Status ParseObject(Value* out, int depth) {
    out->type = Value::Type::kObject;
    ++pos_;  // '{'
    SkipWs();
    if (!AtEnd() && Peek() == '}') { ++pos_; return Status::Ok(); }
    for (;;) {
      SkipWs();
      if (AtEnd() || Peek() != '"') return Error("expected a string key");
      std::string key;
      LOUPE_RETURN_IF_ERROR(ParseString(&key));
      if (out->Find(key)) return Error("duplicate key \"" + key + "\"");
      SkipWs();
      if (AtEnd() || Peek() != ':') return Error("expected ':'");
      ++pos_;
      SkipWs();
      out->object.emplace_back(std::move(key), Value());
      LOUPE_RETURN_IF_ERROR(ParseValue(&out->object.back().second, depth + 1));
      SkipWs();
      if (AtEnd()) return Error("unexpected end of input in object");
      if (Peek() == ',') { ++pos_; continue; }
      if (Peek() == '}') { ++pos_; return Status::Ok(); }
      return Error("expected ',' or '}'");
    }
  }

  Status ParseArray(Value* out, int depth) {
    out->type = Value::Type::kArray;
    ++pos_;  // '['
    SkipWs();
    if (!AtEnd() && Peek() == ']') { ++pos_; return Status::Ok(); }
    for (;;) {
      SkipWs();
      out->array.emplace_back();
      LOUPE_RETURN_IF_ERROR(ParseValue(&out->array.back(), depth + 1));
      SkipWs();
      if (AtEnd()) return Error("unexpected end of input in array");
      if (Peek() == ',') { ++pos_; continue; }
      if (Peek() == ']') { ++pos_; return Status::Ok(); }
      return Error("expected ',' or ']'");
    }
  }

  static int HexDigit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  bool ParseHex4(uint32_t* cp) {
    if (pos_ + 4 > s_.size()) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      int d = HexDigit(s_[pos_ + i]);
      if (d < 0) return false;
      v = v * 16 + (uint32_t)d;
    }
    pos_ += 4;
    *cp = v;
    return true;
  }
  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back((char)cp);
    } else if (cp < 0x800) {
      out->push_back((char)(0xC0 | (cp >> 6)));
      out->push_back((char)(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back((char)(0xE0 | (cp >> 12)));
      out->push_back((char)(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back((char)(0x80 | (cp & 0x3F)));
    } else {
      out->push_back((char)(0xF0 | (cp >> 18)));
      out->push_back((char)(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back((char)(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back((char)(0x80 | (cp & 0x3F)));
    }
  }

  Status ParseString(std::string* out) {
    ++pos_;  // opening quote
    out->clear();
    for (;;) {
      if (AtEnd()) return Error("unterminated string");
      unsigned char c = (unsigned char)s_[pos_];
      if (c == '"') { ++pos_; return Status::Ok(); }
      if (c < 0x20) return Error("control character in string");
      if (c != '\\') { out->push_back((char)c); ++pos_; continue; }
      ++pos_;
      if (AtEnd()) return Error("unterminated escape");
      char e = s_[pos_++];
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          uint32_t cp;
          if (!ParseHex4(&cp)) return Error("bad \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // high surrogate: a low one must follow
            uint32_t lo;
            if (!Consume("\\u") || !ParseHex4(&lo) || lo < 0xDC00 || lo > 0xDFFF)
              return Error("unpaired surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return Error("unpaired surrogate in \\u escape");
          }
          AppendUtf8(cp, out);
          break;
        }
        default: --pos_; return Error("invalid escape");
      }
    }
  }

  Status ParseNumber(Value* out) {
    size_t start = pos_;
    auto digit = [&] { return !AtEnd() && Peek() >= '0' && Peek() <= '9'; };
    if (Peek() == '-') ++pos_;
    if (!digit()) return Error("expected a digit");
    if (Peek() == '0') {
      ++pos_;
      if (digit()) return Error("leading zero in number");
    } else {
      while (digit()) ++pos_;
    }
    if (!AtEnd() && Peek() == '.') {
      ++pos_;
      if (!digit()) return Error("expected a digit after '.'");
      while (digit()) ++pos_;
    }
    if (!AtEnd() && (Peek() == 'e' || Peek() == 'E')) {
      ++pos_;
      if (!AtEnd() && (Peek() == '+' || Peek() == '-')) ++pos_;
      if (!digit()) return Error("expected a digit in exponent");
      while (digit()) ++pos_;
    }
    // from_chars: locale-independent (strtod would honour a ',' decimal locale set by the host).
    double v = 0;
    auto r = std::from_chars(s_.data() + start, s_.data() + pos_, v);
    if (r.ec == std::errc::result_out_of_range) {
      pos_ = start;
      return Error("number out of range");
    }
    if (r.ec != std::errc() || r.ptr != s_.data() + pos_ || !std::isfinite(v)) {
      pos_ = start;
      return Error("invalid number");
    }
    out->type = Value::Type::kNumber;
    out->number = v;
    return Status::Ok();
  }

  const std::string& s_;
  const std::string& what_;
  size_t pos_ = 0;
};

}  // namespace

Status Parse(const std::string& text, const std::string& what, Value* out) {
  *out = Value();
  return Parser(text, what).ParseDocument(out);
}

}  // namespace json
}  // namespace loupe
