// The lock rule of a *Locked method, checked on the sources: a method whose name ends in
// "Locked" (the kernel's __foo or foo_locked: the caller holds a lock) opens with an
// assertion of that lock, as the kernel opens such a function with lockdep_assert_held().
// The first statement of its body must be a call to an Assert…Held… method — the lock's
// AssertHeld / AssertHeldWrite, its debug-only twin DebugAssertHeld, or a small helper of
// the same shape. Expression bodies cannot assert first and are reported too.
//
// The scan is lexical (comments, strings, character literals and preprocessor lines are
// skipped), which is enough for declarations: an identifier ending in "Locked", a
// parameter list, then "{", "=>" or a where clause. Calls are never followed by those.

using System.Text;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using NUnit.Framework;

namespace Vfio.Tests.Build;

public sealed partial class LockedMethodTests
{
    private static readonly HashSet<string> NotProduct = new(StringComparer.Ordinal) { "Vfio.Tests", "Vfio.Benchmarks" };

    // Words that may not appear in the receiver of the assertion call (it must be a plain call statement).
    private static readonly HashSet<string> Keywords = new(StringComparer.Ordinal)
    {
        "return", "var", "await", "new", "throw", "if", "else", "using", "yield", "is", "as", "typeof", "nameof", "default",
    };

    [GeneratedRegex("^(Debug)?Assert[A-Za-z0-9_]*Held[A-Za-z0-9_]*$")]
    private static partial Regex AssertionName();

    [Test]
    public void EveryLockedMethod_AssertsItsLockFirst()
    {
        string root = Repository.Root;
        var offenders = new List<string>();
        int declarations = 0;
        foreach (string project in ProductProjects(root))
        {
            foreach (string file in SourceFiles(Path.Combine(root, project)))
            {
                string relative = Path.GetRelativePath(root, file).Replace('\\', '/');
                foreach (Declaration d in Scan(File.ReadAllText(file)))
                {
                    declarations++;
                    if (d.Problem is not null)
                    {
                        offenders.Add($"{relative}:{d.Line} {d.Name}: {d.Problem}");
                    }
                }
            }
        }

        Assert.That(declarations, Is.GreaterThan(100), $"the scan of {root} found only {declarations} *Locked methods: it is not looking at the product sources");
        Assert.That(offenders, Is.Empty, $"{offenders.Count} *Locked method(s) do not assert their lock on entry (first statement: a call to an Assert…Held… method):\n  {string.Join("\n  ", offenders)}");
    }

    [Test]
    public void TheScanner_FindsEveryKindOfDeclaration_AndOnlyDeclarations()
    {
        const string Source = """
            // void CommentLocked() { }
            class C
            {
                private readonly object _lock = new();
                private string Text => "void StringLocked() { }" + $"{(true ? "x" : "y")} int Hole{1}Locked() {{ }}";
                private char Brace => '{';
                public void GoodLocked() { _lock.AssertHeld(); Work(); }
                private static int StaticGoodLocked(C c) { c.Group!.Lock.AssertHeldWrite(); return 1; }
                internal (int A, long B) TupleBadLocked(int x)
                {
                    int y = x;
                    _lock.AssertHeld();
                    return (y, 0);
                }
                private T GenericGoodLocked<T>(T v) where T : class { DebugAssertWriterHeld(); return v; }
                private int ExpressionLocked() => _lock.AssertHeld();
                private void EmptyLocked() { }
                private void CallerDoesNotCount() { GoodLocked(); x.RemoveLocked(1); var v = OtherLocked(2); }
                void Outer()
                {
                    void LocalBadLocked() { Work(); }
                    static int LocalGoodLocked() { Mem?.Lock.DebugAssertHeld(); return 0; }
                }
                private void AssignedLocked() { var ok = _lock.AssertHeld(); }
                private void BlockFirstLocked() { if (x) { _lock.AssertHeld(); } }
                private void NotAnAssertionLocked() { _lock.AssertLocked(); }
                partial void DeclaredOnlyLocked();
            #if DEBUG
                private void DirectiveLocked() { Work(); }
            #endif
            }
            """;

        string[] found = [.. Scan(Source).Select(d => $"{d.Name}:{d.Line}:{(d.Problem is null ? "ok" : "bad")}")];

        Assert.That(found, Is.EqualTo(new[]
        {
            "GoodLocked:7:ok",
            "StaticGoodLocked:8:ok",
            "TupleBadLocked:9:bad",
            "GenericGoodLocked:15:ok",
            "ExpressionLocked:16:bad",
            "EmptyLocked:17:bad",
            "LocalBadLocked:21:bad",
            "LocalGoodLocked:22:ok",
            "AssignedLocked:24:bad",
            "BlockFirstLocked:25:bad",
            "NotAnAssertionLocked:26:bad",
            "DirectiveLocked:29:bad",
        }));
    }

    // ---- Locating the sources.

    /// <summary>The directories of the solution's projects, but the tests and the benchmarks.</summary>
    private static IEnumerable<string> ProductProjects(string root)
    {
        foreach (XElement p in XDocument.Load(Path.Combine(root, "Vfio.slnx")).Descendants("Project"))
        {
            string? dir = Path.GetDirectoryName((string?)p.Attribute("Path"));
            if (!string.IsNullOrEmpty(dir) && !NotProduct.Contains(dir))
            {
                yield return dir;
            }
        }
    }

    private static IEnumerable<string> SourceFiles(string projectDir)
    {
        string bin = Path.DirectorySeparatorChar + "bin" + Path.DirectorySeparatorChar;
        string obj = Path.DirectorySeparatorChar + "obj" + Path.DirectorySeparatorChar;
        return Directory.EnumerateFiles(projectDir, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains(bin, StringComparison.Ordinal) && !f.Contains(obj, StringComparison.Ordinal))
            .Order(StringComparer.Ordinal);
    }

    // ---- The scan.

    private readonly record struct Declaration(string Name, int Line, string? Problem);

    private enum Kind
    {
        Identifier,
        Punctuation,
        Literal,
    }

    private readonly record struct Token(Kind Kind, string Text, int Line);

    private static List<Declaration> Scan(string source)
    {
        List<Token> t = Lexer.Tokens(source);
        var found = new List<Declaration>();
        for (int i = 0; i < t.Count; i++)
        {
            if (t[i].Kind != Kind.Identifier || !t[i].Text.EndsWith("Locked", StringComparison.Ordinal) || t[i].Text == "Locked")
            {
                continue;
            }

            // A member access or an object creation is a use, not a declaration.
            if (i > 0 && t[i - 1].Text is "." or "?." or "new")
            {
                continue;
            }

            int open = i + 1;
            if (open < t.Count && t[open].Text == "<")
            {
                open = Match(t, open, "<", ">") + 1;
            }

            if (open <= 0 || open >= t.Count || t[open].Text != "(")
            {
                continue;
            }

            int close = Match(t, open, "(", ")");
            int body = close + 1;
            if (close < 0 || body >= t.Count)
            {
                continue;
            }

            if (t[body].Text == "where")
            {
                while (body < t.Count && t[body].Text is not ("{" or "=>" or ";"))
                {
                    body++;
                }
            }

            if (body >= t.Count || t[body].Text is not ("{" or "=>"))
            {
                continue; // A call, or a declaration without a body.
            }

            found.Add(new Declaration(t[i].Text, t[i].Line, t[body].Text == "=>"
                ? "expression-bodied: write a block body that asserts the lock first"
                : FirstStatementProblem(t, body + 1)));
        }

        return found;
    }

    /// <summary>Null when the statement starting at <paramref name="start"/> is a plain call of an Assert…Held… method, else why not.</summary>
    private static string? FirstStatementProblem(List<Token> t, int start)
    {
        if (start >= t.Count || t[start].Text == "}")
        {
            return "the body is empty";
        }

        int end = start;
        int depth = 0;
        while (end < t.Count && !(depth == 0 && t[end].Text is ";" or "{" or "}"))
        {
            depth += t[end].Text is "(" or "[" ? 1 : t[end].Text is ")" or "]" ? -1 : 0;
            end++;
        }

        string statement = Describe(t, start, end);
        if (end >= t.Count || t[end].Text != ";" || t[end - 1].Text != ")")
        {
            return $"first statement is `{statement}`";
        }

        int args = MatchBack(t, end - 1);
        if (args <= start || t[args - 1].Kind != Kind.Identifier || !AssertionName().IsMatch(t[args - 1].Text))
        {
            return $"first statement is `{statement}`";
        }

        for (int k = start; k < args - 1; k++)
        {
            bool receiver = t[k].Kind == Kind.Literal
                || (t[k].Kind == Kind.Identifier && !Keywords.Contains(t[k].Text))
                || t[k].Text is "." or "?." or "!" or "(" or ")" or "[" or "]" or ",";
            if (!receiver)
            {
                return $"first statement is `{statement}`";
            }
        }

        return args - 1 > start && t[args - 2].Text is not ("." or "?.") ? $"first statement is `{statement}`" : null;
    }

    private static string Describe(List<Token> t, int start, int end)
    {
        var sb = new StringBuilder();
        for (int k = start; k < Math.Min(end + 1, t.Count) && sb.Length < 80; k++)
        {
            if (k > start && t[k].Kind != Kind.Punctuation && t[k - 1].Kind != Kind.Punctuation)
            {
                sb.Append(' ');
            }

            sb.Append(t[k].Text);
        }

        return sb.ToString();
    }

    private static int Match(List<Token> t, int open, string o, string c)
    {
        int depth = 0;
        for (int k = open; k < t.Count; k++)
        {
            if (t[k].Text == o)
            {
                depth++;
            }
            else if (t[k].Text == c && --depth == 0)
            {
                return k;
            }
            else if (o == "<" && t[k].Text is "(" or ")" or "{" or "}" or ";" or "=")
            {
                return -1; // A comparison, not type arguments.
            }
        }

        return -1;
    }

    private static int MatchBack(List<Token> t, int close)
    {
        int depth = 0;
        for (int k = close; k >= 0; k--)
        {
            if (t[k].Text == ")")
            {
                depth++;
            }
            else if (t[k].Text == "(" && --depth == 0)
            {
                return k;
            }
        }

        return -1;
    }

    /// <summary>A C# tokenizer that keeps identifiers and punctuation and skips comments, literals' contents and directives.</summary>
    private static class Lexer
    {
        public static List<Token> Tokens(string s)
        {
            var tokens = new List<Token>();
            int i = 0, line = 1;
            bool lineStart = true;
            while (i < s.Length)
            {
                char c = s[i];
                if (c == '\n')
                {
                    line++;
                    i++;
                    lineStart = true;
                    continue;
                }

                if (char.IsWhiteSpace(c))
                {
                    i++;
                    continue;
                }

                if (c == '#' && lineStart)
                {
                    i = EndOfLine(s, i);
                    continue;
                }

                lineStart = false;
                if (c == '/' && At(s, i + 1) == '/')
                {
                    i = EndOfLine(s, i);
                    continue;
                }

                if (c == '/' && At(s, i + 1) == '*')
                {
                    int end = s.IndexOf("*/", i + 2, StringComparison.Ordinal);
                    end = end < 0 ? s.Length : end + 2;
                    line += Count(s, i, end);
                    i = end;
                    continue;
                }

                if (StartsString(s, i))
                {
                    int end = SkipString(s, i);
                    tokens.Add(new Token(Kind.Literal, "\"\"", line));
                    line += Count(s, i, end);
                    i = end;
                    continue;
                }

                if (c == '\'')
                {
                    i = SkipChar(s, i);
                    tokens.Add(new Token(Kind.Literal, "''", line));
                    continue;
                }

                if (char.IsLetter(c) || c == '_' || (c == '@' && (char.IsLetter(At(s, i + 1)) || At(s, i + 1) == '_')))
                {
                    int start = c == '@' ? i + 1 : i;
                    int end = start;
                    while (end < s.Length && (char.IsLetterOrDigit(s[end]) || s[end] == '_'))
                    {
                        end++;
                    }

                    tokens.Add(new Token(Kind.Identifier, s[start..end], line));
                    i = end;
                    continue;
                }

                if (char.IsDigit(c))
                {
                    int end = i;
                    while (end < s.Length && (char.IsLetterOrDigit(s[end]) || s[end] is '_' or '.'))
                    {
                        end++;
                    }

                    tokens.Add(new Token(Kind.Literal, s[i..end], line));
                    i = end;
                    continue;
                }

                string p = c == '=' && At(s, i + 1) == '>' ? "=>" : c == '?' && At(s, i + 1) == '.' ? "?." : c.ToString();
                tokens.Add(new Token(Kind.Punctuation, p, line));
                i += p.Length;
            }

            return tokens;
        }

        private static char At(string s, int i) => i < s.Length ? s[i] : '\0';

        private static int EndOfLine(string s, int i)
        {
            int end = s.IndexOf('\n', i);
            return end < 0 ? s.Length : end;
        }

        private static int Count(string s, int from, int to)
        {
            int n = 0;
            for (int k = from; k < to; k++)
            {
                n += s[k] == '\n' ? 1 : 0;
            }

            return n;
        }

        /// <summary>A string literal starts here: quotes after any mix of '$' and '@' prefixes.</summary>
        private static bool StartsString(string s, int i)
        {
            int k = i;
            while (k < s.Length && s[k] is '$' or '@')
            {
                k++;
            }

            return At(s, k) == '"';
        }

        private static int SkipChar(string s, int i)
        {
            int k = i + 1;
            while (k < s.Length && s[k] != '\'')
            {
                k += s[k] == '\\' ? 2 : 1;
            }

            return k + 1;
        }

        /// <summary>The index after the string literal at <paramref name="i"/> (regular, verbatim, interpolated or raw).</summary>
        private static int SkipString(string s, int i)
        {
            int dollars = 0;
            bool verbatim = false;
            int k = i;
            while (s[k] is '$' or '@')
            {
                dollars += s[k] == '$' ? 1 : 0;
                verbatim |= s[k] == '@';
                k++;
            }

            int quotes = 0;
            while (At(s, k + quotes) == '"')
            {
                quotes++;
            }

            if (quotes >= 3)
            {
                string fence = new('"', quotes);
                k += quotes;
                while (k < s.Length && string.CompareOrdinal(s, k, fence, 0, quotes) != 0)
                {
                    if (dollars > 0 && s[k] == '{' && string.CompareOrdinal(s, k, new string('{', dollars), 0, dollars) == 0)
                    {
                        k = SkipHole(s, k + dollars);
                        continue;
                    }

                    k++;
                }

                return Math.Min(k + quotes, s.Length);
            }

            k++;
            while (k < s.Length)
            {
                char c = s[k];
                if (c == '\\' && !verbatim)
                {
                    k += 2;
                }
                else if (c == '"' && verbatim && At(s, k + 1) == '"')
                {
                    k += 2;
                }
                else if (c == '"')
                {
                    return k + 1;
                }
                else if (c == '{' && dollars > 0)
                {
                    k = At(s, k + 1) == '{' ? k + 2 : SkipHole(s, k + 1);
                }
                else
                {
                    k++;
                }
            }

            return k;
        }

        /// <summary>Skips the code of an interpolation hole up to (and past) its closing brace.</summary>
        private static int SkipHole(string s, int k)
        {
            int depth = 0;
            while (k < s.Length)
            {
                char c = s[k];
                if (StartsString(s, k))
                {
                    k = SkipString(s, k);
                }
                else if (c == '\'')
                {
                    k = SkipChar(s, k);
                }
                else if (c is '(' or '[' or '{')
                {
                    depth++;
                    k++;
                }
                else if (c is ')' or ']' or '}')
                {
                    if (depth == 0)
                    {
                        // Only '}' can close a hole; a stray bracket means malformed source, so stop here.
                        return k + 1;
                    }

                    depth--;
                    k++;
                }
                else
                {
                    k++;
                }
            }

            return k;
        }
    }
}
