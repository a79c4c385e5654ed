// A tiny test harness (no gtest: the device machine builds with CMake alone).
// Usage: TEST_CASE(name) { CHECK(cond); CHECK_NEAR(a, b, tol); CHECK_OK(status); }  + LOUPE_TEST_MAIN()
// A test can SKIP("reason") when an optional resource (GPU, real weights) is missing: ctest sees exit 0
// and the skip is printed, so the log shows what did not run.
#pragma once
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "loupe/status.h"

namespace loupe_test {
struct Case { const char* name; std::function<void()> fn; };
inline std::vector<Case>& Registry() { static std::vector<Case> r; return r; }
inline int& Failures() { static int f = 0; return f; }
struct SkipException { std::string why; };
struct Registrar { Registrar(const char* n, std::function<void()> f) { Registry().push_back({n, std::move(f)}); } };
inline int RunAll() {
  int failed_cases = 0;
  for (auto& c : Registry()) {
    int before = Failures();
    std::printf("[ RUN  ] %s\n", c.name);
    try {
      c.fn();
    } catch (const SkipException& s) {
      std::printf("[ SKIP ] %s: %s\n", c.name, s.why.c_str());
      continue;
    }
    bool ok = Failures() == before;
    std::printf("[ %s ] %s\n", ok ? " OK " : "FAIL", c.name);
    if (!ok) ++failed_cases;
  }
  std::printf("%d passed, %d failed\n", (int)Registry().size() - failed_cases, failed_cases);
  return failed_cases == 0 ? 0 : 1;
}
// Environment helpers: LOUPE_SHARED_DIR (set by ctest), LOUPE_WEIGHTS (model.json path).
inline std::string Env(const char* k) { const char* v = std::getenv(k); return v ? v : ""; }
}  // namespace loupe_test

#define LOUPE_CAT2(a, b) a##b
#define LOUPE_CAT(a, b) LOUPE_CAT2(a, b)
#define TEST_CASE(name)                                                                  \
  static void name();                                                                    \
  static ::loupe_test::Registrar LOUPE_CAT(reg_, name)(#name, name);                     \
  static void name()
#define CHECK(cond)                                                                      \
  do { if (!(cond)) { std::printf("  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
       ++::loupe_test::Failures(); } } while (0)
#define CHECK_NEAR(a, b, tol)                                                            \
  do { double _a = (a), _b = (b), _t = (tol);                                            \
       if (!(std::fabs(_a - _b) <= _t)) { std::printf("  %s:%d: |%s - %s| = |%g - %g| > %g\n", \
           __FILE__, __LINE__, #a, #b, _a, _b, _t); ++::loupe_test::Failures(); } } while (0)
#define CHECK_OK(expr)                                                                   \
  do { ::loupe::Status _s = (expr);                                                      \
       if (!_s.ok()) { std::printf("  %s:%d: %s -> %s\n", __FILE__, __LINE__, #expr,     \
           _s.ToString().c_str()); ++::loupe_test::Failures(); } } while (0)
#define REQUIRE_OK(expr)                                                                 \
  do { ::loupe::Status _s = (expr);                                                      \
       if (!_s.ok()) { std::printf("  %s:%d: %s -> %s\n", __FILE__, __LINE__, #expr,     \
           _s.ToString().c_str()); ++::loupe_test::Failures(); return; } } while (0)
#define SKIP(why) throw ::loupe_test::SkipException{why}
#define LOUPE_TEST_MAIN() int main() { return ::loupe_test::RunAll(); }
