// The shell's grammar, a small part of POSIX sh's (XCU 2.2–2.9): words with '…', "…" and \
// quoting, `#` comments, commands separated by `;`, new lines, `&&` and `||`, the output
// redirections `>` and `>>`, and `$?`. No pipes, no background jobs, no variables.

namespace Vfio.Sim.Shell;

/// <summary>How a command is joined to the next one.</summary>
internal enum Connector
{
    /// <summary><c>;</c> or a new line: the next runs whatever this one returned.</summary>
    Sequence,

    /// <summary><c>&amp;&amp;</c>: the next runs only when this one succeeded.</summary>
    And,

    /// <summary><c>||</c>: the next runs only when this one failed.</summary>
    Or,
}

/// <summary>One command: its words, its output redirection, and how it joins the next.</summary>
internal sealed record SimpleCommand(IReadOnlyList<string> Words, string? Redirect, bool Append, Connector Next);

internal static class ShellParser
{
    /// <summary>Stands for <c>$?</c> in a word until the command runs (a private-use character no one types).</summary>
    public const string LastStatusMarker = "\uE000";

    /// <summary>Stands for an unquoted <c>*</c> (a glob), so a quoted one stays literal.</summary>
    public const char GlobStar = '\uE001';

    /// <summary>Stands for an unquoted <c>?</c> (a glob).</summary>
    public const char GlobOne = '\uE002';

    /// <summary>Parses <paramref name="text"/>; false with <paramref name="error"/> for a syntax error.</summary>
    public static bool TryParse(string text, out List<SimpleCommand> commands, out string? error)
    {
        commands = [];
        error = null;
        var words = new List<string>();
        var word = new System.Text.StringBuilder();
        bool inWord = false;
        string? redirect = null;
        bool append = false;
        int redirectPending = 0; // 1: `>` seen, 2: `>>` seen; the next word is the file

        void EndWord()
        {
            if (!inWord)
            {
                return;
            }

            if (redirectPending != 0)
            {
                redirect = word.ToString();
                append = redirectPending == 2;
                redirectPending = 0;
            }
            else
            {
                words.Add(word.ToString());
            }

            word.Clear();
            inWord = false;
        }

        bool EndCommand(Connector next, List<SimpleCommand> into, out string? err)
        {
            EndWord();
            err = null;
            if (redirectPending != 0)
            {
                err = "a redirection names no file";
                return false;
            }

            if (words.Count == 0)
            {
                if (redirect is not null || next != Connector.Sequence)
                {
                    err = next == Connector.Sequence ? "a redirection with no command" : $"'{(next == Connector.And ? "&&" : "||")}' with no command before it";
                    return false;
                }

                return true;
            }

            into.Add(new SimpleCommand([.. words], redirect, append, next));
            words.Clear();
            redirect = null;
            append = false;
            return true;
        }

        int i = 0;
        while (i < text.Length)
        {
            char ch = text[i];
            switch (ch)
            {
                case ' ' or '\t' or '\r':
                    EndWord();
                    i++;
                    break;
                case '#' when !inWord:
                    while (i < text.Length && text[i] != '\n')
                    {
                        i++;
                    }

                    break;
                case '\n' or ';':
                    if (!EndCommand(Connector.Sequence, commands, out error))
                    {
                        return false;
                    }

                    i++;
                    break;
                case '&':
                    if (i + 1 < text.Length && text[i + 1] == '&')
                    {
                        if (!EndCommand(Connector.And, commands, out error))
                        {
                            return false;
                        }

                        i += 2;
                        break;
                    }

                    error = "background jobs (&) are not supported";
                    return false;
                case '|':
                    if (i + 1 < text.Length && text[i + 1] == '|')
                    {
                        if (!EndCommand(Connector.Or, commands, out error))
                        {
                            return false;
                        }

                        i += 2;
                        break;
                    }

                    error = "pipes (|) are not supported";
                    return false;
                case '>':
                    EndWord();
                    if (redirectPending != 0)
                    {
                        error = "unexpected '>'";
                        return false;
                    }

                    redirectPending = i + 1 < text.Length && text[i + 1] == '>' ? 2 : 1;
                    i += redirectPending;
                    break;
                case '\'':
                {
                    int end = text.IndexOf('\'', i + 1);
                    if (end < 0)
                    {
                        error = "unterminated quoted string";
                        return false;
                    }

                    word.Append(text, i + 1, end - i - 1);
                    inWord = true;
                    i = end + 1;
                    break;
                }

                case '"':
                {
                    inWord = true;
                    i++;
                    bool closed = false;
                    while (i < text.Length)
                    {
                        char c = text[i];
                        if (c == '"')
                        {
                            closed = true;
                            i++;
                            break;
                        }

                        if (c == '\\' && i + 1 < text.Length && text[i + 1] is '"' or '\\' or '$')
                        {
                            word.Append(text[i + 1]);
                            i += 2;
                            continue;
                        }

                        if (c == '$' && i + 1 < text.Length && text[i + 1] == '?')
                        {
                            word.Append(LastStatusMarker);
                            i += 2;
                            continue;
                        }

                        word.Append(c);
                        i++;
                    }

                    if (!closed)
                    {
                        error = "unterminated quoted string";
                        return false;
                    }

                    break;
                }

                case '\\':
                    if (i + 1 < text.Length)
                    {
                        if (text[i + 1] != '\n')
                        {
                            word.Append(text[i + 1]);
                            inWord = true;
                        }

                        i += 2;
                    }
                    else
                    {
                        i++;
                    }

                    break;
                case '$' when i + 1 < text.Length && text[i + 1] == '?':
                    word.Append(LastStatusMarker);
                    inWord = true;
                    i += 2;
                    break;
                default:
                    word.Append(ch switch { '*' => GlobStar, '?' => GlobOne, _ => ch });
                    inWord = true;
                    i++;
                    break;
            }
        }

        if (!EndCommand(Connector.Sequence, commands, out error))
        {
            return false;
        }

        if (commands.Count > 0 && commands[^1].Next != Connector.Sequence)
        {
            error = $"'{(commands[^1].Next == Connector.And ? "&&" : "||")}' with no command after it";
            return false;
        }

        return true;
    }
}
