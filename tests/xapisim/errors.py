"""XAPI failures: an error code and its parameters, as XAPI puts them in ErrorDescription."""


class XapiError(Exception):
    def __init__(self, code, *params):
        super().__init__(code, *params)
        self.code = code
        self.params = [str(p) for p in params]

    @property
    def description(self):
        return [self.code] + self.params

    def __str__(self):
        return "%s %s" % (self.code, self.params)
