// Design variants by name, for the command line and for replay files: KEY=VALUE where KEY
// is a property of VfioDesign (Unbind, TrackDevicesDuringUnbind, RevokeAfter…) or, with
// the prefix "Mdev.", of MdevDesign. Values: true/false/on/off, an enum member's name, a
// whole number, or a time span (30s, 500ms, 00:00:30). Names compare without case.

using System.Globalization;
using System.Reflection;
using Vfio.Core;
using Vfio.Mdev;

namespace Vfio.Sim.Races;

/// <summary>Design variants written as <c>KEY=VALUE</c> (<c>Unbind=SilentBlock</c>, <c>Mdev.SynchronizeWithParentRemoval=false</c>).</summary>
public static class DesignSettings
{
    private const string MdevPrefix = "Mdev.";

    /// <summary>Every key this build knows, with its type: <c>Unbind (SilentBlock|RequestAndWait|…)</c>.</summary>
    public static IReadOnlyList<string> Keys { get; } = BuildKeys();

    /// <summary>
    /// Checks <paramref name="setting"/> (<c>KEY=VALUE</c>) and returns null, or says what is wrong
    /// and which keys or values exist.
    /// </summary>
    public static string? Validate(string setting)
    {
        ArgumentNullException.ThrowIfNull(setting);
        try
        {
            With(VfioDesign.Default, MdevDesign.Default, setting);
            return null;
        }
        catch (FormatException e)
        {
            return e.Message;
        }
    }

    /// <summary>Applies <paramref name="settings"/> to the builder's vfio (and, for <c>Mdev.</c> keys, mdev) design.</summary>
    /// <exception cref="FormatException">A setting names no design property or has a value it cannot take.</exception>
    public static void Apply(VfioSimBuilder builder, IReadOnlyList<string> settings)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(settings);

        // Validate all first, so a bad setting changes nothing.
        foreach (string setting in settings)
        {
            With(VfioDesign.Default, MdevDesign.Default, setting);
        }

        foreach (string setting in settings)
        {
            if (IsMdev(setting))
            {
                builder.UseMdevDesign(d => (MdevDesign)With(VfioDesign.Default, d, setting));
            }
            else
            {
                builder.UseDesign(d => (VfioDesign)With(d, MdevDesign.Default, setting));
            }
        }
    }

    private static bool IsMdev(string setting) => setting.TrimStart().StartsWith(MdevPrefix, StringComparison.OrdinalIgnoreCase);

    // The design (vfio's or mdev's, whichever the key names) with the setting applied.
    private static object With(VfioDesign vfio, MdevDesign mdev, string setting)
    {
        int eq = setting.IndexOf('=', StringComparison.Ordinal);
        if (eq <= 0 || eq == setting.Length - 1)
        {
            throw new FormatException($"design setting '{setting}' is not KEY=VALUE; keys: {string.Join(", ", Keys)}");
        }

        string key = setting[..eq].Trim();
        string value = setting[(eq + 1)..].Trim();
        bool isMdev = IsMdev(key);
        object target = isMdev ? mdev : vfio;
        string name = isMdev ? key[MdevPrefix.Length..] : key;
        PropertyInfo p = Settable(target.GetType()).FirstOrDefault(x => string.Equals(x.Name, name, StringComparison.OrdinalIgnoreCase))
            ?? throw new FormatException($"no design variant is called '{key}'; keys: {string.Join(", ", Keys)}");
        object parsed = Parse(p, value, key);

        // Records: copy, then set the init-only property on the copy.
        object copy = target.GetType().GetMethod("<Clone>$")!.Invoke(target, null)!;
        p.SetValue(copy, parsed);
        return copy;
    }

    private static object Parse(PropertyInfo p, string value, string key)
    {
        Type t = p.PropertyType;
        if (t == typeof(bool))
        {
            return value.ToLowerInvariant() switch
            {
                "true" or "on" or "1" or "yes" => true,
                "false" or "off" or "0" or "no" => false,
                _ => throw new FormatException($"{key} takes true or false (on/off), not '{value}'"),
            };
        }

        if (t.IsEnum)
        {
            return Enum.GetNames(t).FirstOrDefault(n => string.Equals(n, value, StringComparison.OrdinalIgnoreCase)) is { } n2
                ? Enum.Parse(t, n2)
                : throw new FormatException($"{key} takes one of {string.Join(", ", Enum.GetNames(t))}, not '{value}'");
        }

        if (t == typeof(int))
        {
            return int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int i)
                ? i
                : throw new FormatException($"{key} takes a whole number, not '{value}'");
        }

        if (t == typeof(TimeSpan))
        {
            if (value.EndsWith("ms", StringComparison.OrdinalIgnoreCase) && double.TryParse(value[..^2], NumberStyles.Float, CultureInfo.InvariantCulture, out double ms))
            {
                return TimeSpan.FromMilliseconds(ms);
            }

            if (value.EndsWith('s') && double.TryParse(value[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out double s))
            {
                return TimeSpan.FromSeconds(s);
            }

            return TimeSpan.TryParse(value, CultureInfo.InvariantCulture, out TimeSpan ts)
                ? ts
                : throw new FormatException($"{key} takes a time span (30s, 500ms, 00:00:30), not '{value}'");
        }

        throw new FormatException($"{key} cannot be set from the command line");
    }

    private static IEnumerable<PropertyInfo> Settable(Type t)
        => t.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.CanWrite && (p.PropertyType == typeof(bool) || p.PropertyType.IsEnum || p.PropertyType == typeof(int) || p.PropertyType == typeof(TimeSpan)))
            .OrderBy(p => p.Name, StringComparer.Ordinal);

    private static string[] BuildKeys()
        => [.. Settable(typeof(VfioDesign)).Select(Describe), .. Settable(typeof(MdevDesign)).Select(p => MdevPrefix + Describe(p))];

    private static string Describe(PropertyInfo p)
        => p.PropertyType.IsEnum ? $"{p.Name} ({string.Join("|", Enum.GetNames(p.PropertyType))})"
            : p.PropertyType == typeof(bool) ? $"{p.Name} (true|false)"
            : p.PropertyType == typeof(TimeSpan) ? $"{p.Name} (time span)"
            : $"{p.Name} (number)";
}
