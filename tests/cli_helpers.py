"""What several test files ask of the CLI: a bad input ends as exit code 2 and
one line of svertka's own error."""
from svertka.cli import main


def one_line_error(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("svertka: error:") and "\n" not in err and "Traceback" not in err
    return err
