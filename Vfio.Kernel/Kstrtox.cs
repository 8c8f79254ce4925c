// Models lib/kstrtox.c (v6.12): the string-to-number conversion sysfs stores use.

namespace Vfio.Kernel;

/// <summary>kstrto* helpers.</summary>
public static class Kstrtox
{
    /// <summary>
    /// kstrtoul(s, 0, &amp;res): an optional '+', then 0x (hex), 0 (octal) or decimal digits,
    /// then at most one newline. False on anything else or overflow (-EINVAL / -ERANGE).
    /// </summary>
    public static bool Kstrtoul(string buf, out ulong value)
    {
        value = 0;
        ReadOnlySpan<char> s = buf;
        if (s.Length > 0 && s[0] == '+')
        {
            s = s[1..];
        }

        uint radix = 10;
        if (s.Length > 0 && s[0] == '0')
        {
            // _parse_integer_fixup_radix(): "0x" counts only when a hex digit follows.
            radix = s.Length > 2 && (s[1] | 0x20) == 'x' && char.IsAsciiHexDigit(s[2]) ? 16u : 8u;
            if (radix == 16)
            {
                s = s[2..];
            }
        }

        int i = 0;
        for (; i < s.Length; i++)
        {
            char c = s[i];
            uint d = char.IsAsciiDigit(c) ? (uint)(c - '0') : char.IsAsciiHexDigit(c) ? (uint)((c | 0x20) - 'a' + 10) : uint.MaxValue;
            if (d >= radix)
            {
                break;
            }

            if (value > (ulong.MaxValue - d) / radix)
            {
                return false; // -ERANGE
            }

            value = (value * radix) + d;
        }

        return i > 0 && (i == s.Length || (i == s.Length - 1 && s[i] == '\n'));
    }
}
