// Models lib/kstrtox.c (v6.12): the string-to-number conversion sysfs stores use.

namespace Vfio.Kernel;

/// <summary>kstrto* helpers.</summary>
public static class Kstrtox
{
    /// <summary>
    /// kstrtoul(s, 0, &amp;res): an optional '+', then 0x (hex), 0 (octal) or decimal digits,
    /// then at most one newline. False on anything else or overflow (-EINVAL / -ERANGE).
    /// </summary>
    public static bool Kstrtoul(string buf, out ulong value) => Kstrtoull(buf, out value) == 0;

    /// <summary>kstrtou16(s, 0, &amp;res): as <see cref="Kstrtoul"/>; 0, -EINVAL for text that is not a number, -ERANGE above 65535.</summary>
    public static int Kstrtou16(string buf, out ushort value)
    {
        value = 0;
        int rc = Kstrtoull(buf, out ulong v);
        if (rc != 0)
        {
            return rc;
        }

        if (v > ushort.MaxValue)
        {
            return Errno.ERANGE.Negative();
        }

        value = (ushort)v;
        return 0;
    }

    /// <summary>kstrtoull(s, 0, &amp;res): 0, -EINVAL (not a number) or -ERANGE (overflow).</summary>
    private static int Kstrtoull(string buf, out ulong value)
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
                return Errno.ERANGE.Negative();
            }

            value = (value * radix) + d;
        }

        return i > 0 && (i == s.Length || (i == s.Length - 1 && s[i] == '\n')) ? 0 : Errno.EINVAL.Negative();
    }
}
