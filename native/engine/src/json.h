// A small strict JSON (RFC 8259) parser for model.json: no extensions, no trailing commas, depth
// limited so a hostile file cannot overflow the stack. Errors carry the byte offset.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "loupe/status.h"

namespace loupe {
namespace json {

struct Value {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Value> array;
  std::vector<std::pair<std::string, Value>> object;  // file order kept; duplicate keys rejected

  bool is_null() const { return type == Type::kNull; }
  bool is_bool() const { return type == Type::kBool; }
  bool is_number() const { return type == Type::kNumber; }
  bool is_string() const { return type == Type::kString; }
  bool is_array() const { return type == Type::kArray; }
  bool is_object() const { return type == Type::kObject; }
  // Object member by key, or nullptr (also when this is not an object).
  const Value* Find(const std::string& key) const;
};

// Parses the whole text (only whitespace may follow the value). `what` names the source in errors.
// Errors: CorruptData "model.json: byte 123: expected ',' or '}'".
Status Parse(const std::string& text, const std::string& what, Value* out);

}  // namespace json
}  // namespace loupe
